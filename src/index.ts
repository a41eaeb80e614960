// The public surface, as the cowboy and erlang modules are: everything `import { … } from "corral"` offers.
export * from "./runtime/index.js";
export {
  clusterInfo,
  nodes,
  startCluster,
  startClusterPrimary,
  stopCluster,
  type ClusterInfo,
  type ClusterOptions,
  type ClusterPrimaryOptions,
  type IpcClusterOptions,
  type RedisClusterOptions,
} from "./cluster/cluster.js";
export { binary, close, ping, pong, text, type CloseFrame, type Frame, type InFrame } from "./behaviors/frames.js";
export type {
  Body,
  ContentType,
  CookieOptions,
  HeaderValue,
  HttpOk,
  MediaRange,
  ParsedHeaders,
  PartialReq,
  Peer,
  Req,
  SendFile,
} from "./behaviors/req.js";
export { bullet, type BulletOptions, type BulletRoute, type BulletTransport } from "./behaviors/bullet.js";
export { loop, type Loop, type LoopHandler, type LoopOptions } from "./behaviors/loop.js";
export type { Handler, HttpHandler, RouteOptsCheck } from "./behaviors/request.js";
export {
  commands,
  reply,
  upgrade,
  DEFAULT_MAX_BUFFERED_AMOUNT,
  type CallResult,
  type Command,
  type Commands,
  type InitResult,
  type Reply,
  type TerminateReason,
  type Upgrade,
  type WebSocketHandler,
  type WebSocketOptions,
  type WebSocketResult,
} from "./behaviors/websocket.js";
export {
  listenerInfo,
  startClear,
  startTls,
  stopListener,
  type Listener,
  type ProtocolOptions,
  type TlsTransportOptions,
  type TransportOptions,
} from "./server/listener.js";
export {
  compileRoutes,
  matchRoute,
  type Dispatch,
  type HostRoute,
  type PathRoute,
  type PathRouteObject,
  type RouteConstraint,
  type RouteConstraintFn,
  type RouteConstraints,
  type RouteMatch,
  type RouteOpts,
} from "./server/router.js";
export * from "./behaviors/supervisor.js";
export { staticDir, staticFile, type MimeTypes, type StaticOptions } from "./handlers/static.js";
export * from "./behaviors/machine.js";
export { metrics, type MetricsOptions, type MetricsState } from "./observe/metrics.js";
export { observer, type ObserverOptions, type ObserverState } from "./observe/observer.js";
