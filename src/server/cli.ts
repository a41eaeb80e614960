#!/usr/bin/env node
import { nodeName, processCount } from "../runtime/index.js";

// The demo server lands with the WebSocket and HTTP issues; until then the CLI says what is here.
console.log(`corral: the process runtime is in place (node ${nodeName()}, ${processCount()} processes).`);
console.log("The WebSocket server and the demo are not built yet: see README.md.");
