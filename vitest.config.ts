import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: {
    // The app imports the library as "corral" (dist/index.js once built); under test that is the source the tests import, one runtime; "corral/testing" likewise; "corral/client" is its one file as shipped.
    alias: [
      { find: /^corral$/, replacement: fileURLToPath(new URL("./src/index.ts", import.meta.url)) },
      { find: /^corral\/testing$/, replacement: fileURLToPath(new URL("./src/testing.ts", import.meta.url)) },
      { find: /^corral\/client$/, replacement: fileURLToPath(new URL("./client/corral-client.js", import.meta.url)) },
    ],
  },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
});
