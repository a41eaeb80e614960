/**
 * The session directory when bullet's module loads after the cluster started (a lazy import
 * of the sessions' code): it starts at that load, not at the first bullet request. This file
 * imports the cluster and the runtime by path, not the package's index, which loads bullet.
 */
import { expect, test } from "vitest";
import { startCluster, stopCluster } from "../../src/cluster/cluster.js";
import { members } from "../../src/runtime/groups.js";
import { until } from "../support/dist.js";

const DIRECTORIES = "corral.bullet.directories";

test("bullet's module loaded while a cluster runs starts the directory there and then; it stops and starts with the cluster after", async () => {
  await startCluster({ ipc: true, node: `dl-${process.pid}@127.0.0.1` });
  try {
    expect(members(DIRECTORIES)).toEqual([]);
    await import("../../src/behaviors/bullet.js");
    expect(members(DIRECTORIES)).toHaveLength(1);
  } finally {
    await stopCluster();
  }
  await until(() => members(DIRECTORIES).length === 0 || undefined, 2000, "the directory to end with the cluster");
  await startCluster({ ipc: true, node: `dl-${process.pid}@127.0.0.1` });
  try {
    expect(members(DIRECTORIES)).toHaveLength(1);
  } finally {
    await stopCluster();
  }
});
