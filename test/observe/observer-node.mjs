// Preloaded (NODE_OPTIONS="--import …") into a cluster test node (test/support/cluster-node.mjs)
// by test/observe/observer-cluster.test.ts: once the node is in the cluster it calls observer(),
// which starts its observer agent, and starts a supervisor named "remote-sup" with one worker,
// for the page on another node to find. In any other process it does nothing.
const main = process.argv[1] ?? "";

if (typeof process.send === "function" && main.endsWith("cluster-node.mjs")) {
  // The very module cluster-node.mjs imports: one runtime.
  const corral = await import("../../dist/index.js");
  // After startCluster: the node's first pids must come after its creation is set.
  const whenUp = () => {
    if (corral.clusterInfo() === undefined) return void setTimeout(whenUp, 20);
    corral.observer();
    const worker = () => corral.spawnLink(async (ctx) => void (await ctx.receive()));
    corral.startSupervisor({ children: [{ id: "remote-worker", start: worker }] }, { name: "remote-sup" });
  };
  whenUp();
}
