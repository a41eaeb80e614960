/**
 * Type-level tests of compileRoutes: each path's opts are checked against what its handler's
 * init declares. A line after `// @ts-expect-error -- text` must fail to compile with an error
 * whose message holds text (test/types/expect-errors.test.ts); everything else must compile.
 */
import {
  compileRoutes,
  loop,
  ok,
  staticDir,
  staticFile,
  upgrade,
  type Handler,
  type HostRoute,
  type HttpHandler,
  type LoopHandler,
  type PathRoute,
  type RouteOpts,
  type RouteOptsCheck,
  type WebSocketHandler,
} from "../../src/index.js";

interface LiveOpts {
  readonly pingMs: number;
}
interface DbOpts {
  readonly db: { readonly host: string; readonly port?: number };
}

declare const hello: HttpHandler<null>;
declare const live: WebSocketHandler<null, LiveOpts>;
declare const guide: WebSocketHandler<null, { readonly heartbeat?: number }>;
declare const maybe: HttpHandler<null, { readonly title?: string } | undefined>;
declare const users: HttpHandler<null, DbOpts>;
declare const poll: LoopHandler<null, LiveOpts>;
declare const any: Handler;

/** Compiles only when A and B are the same type. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const same = <A, B>(ok: Equal<A, B>): Equal<A, B> => ok;

// What a handler declares is what its routes must give.
same<RouteOpts<typeof live>, LiveOpts>(true);
same<RouteOpts<typeof hello>, unknown>(true);
same<RouteOpts<{ init(req: never): null }>, unknown>(true);

// ---------------------------------------------------------------------------------------
// The table as users write it compiles, unchanged.

compileRoutes([
  {
    host: "_",
    paths: [
      ["/", hello],
      ["/hello/:name", hello, { anything: "goes where the handler declares no opts" }],
      ["/live", live, { pingMs: 25_000 }],
      ["/websocket", guide, { heartbeat: 5000 }],
      ["/websocket/empty", guide, {}],
      ["/maybe", maybe],
      ["/maybe/titled", maybe, { title: "t" }],
      ["/users", users, { db: { host: "localhost", port: 5432 } }],
      ["/poll", poll, { pingMs: 1000 }],
      ["/any", any, 42],
      ["/index.html", staticFile("priv/index.html")],
      { path: "/users/:id", handler: users, opts: { db: { host: "h" } }, constraints: { id: "int" } },
      { path: "/live/:room", handler: live, opts: { pingMs: 1 }, constraints: { room: (s) => s.length < 32 } },
      { path: "/n/:n", handler: hello, constraints: { n: ["int", (s) => ({ ok: s.replace(/^0+(?=\d)/, "") })] } },
    ],
  },
  { host: ":tenant.example.com", constraints: { tenant: "nonempty" }, paths: [["/", hello]] },
]);

// A handler written inline gets its types from the route.
compileRoutes([
  {
    host: "_",
    paths: [
      [
        "/inline",
        {
          init(req, opts) {
            req.reply(200, {}, String(opts));
            return { type: "ok", req, state: null };
          },
        },
      ],
    ],
  },
]);

// Routes typed HostRoute or PathRoute[] are not checked per handler (the annotation says any handler, any opts).
declare const host: HostRoute;
declare const paths: PathRoute[];
compileRoutes([host, { host: "_", paths }]);

// ---------------------------------------------------------------------------------------
// Wrong opts are errors, on the line of the wrong option.

compileRoutes([
  {
    host: "_",
    paths: [
      ["/", hello],
      // @ts-expect-error -- Type 'string' is not assignable to type 'number'
      ["/live", live, { pingMs: "often" }],
      // @ts-expect-error -- 'pingMS' does not exist in type 'LiveOpts'
      ["/live/typo", live, { pingMs: 1, pingMS: 2 }],
      // The route: TypeScript names the wrong type first, then the typo once that is fixed.
      // @ts-expect-error -- Type 'string' is not assignable to type 'number'
      ["/live/issue", live, { pingMs: "often", typo: 1 }],
      // @ts-expect-error -- 'hots' does not exist in type
      ["/users", users, { db: { hots: "localhost" } }],
      // @ts-expect-error -- Type 'string' is not assignable to type 'number'
      ["/poll", poll, { pingMs: "1s" }],
      // @ts-expect-error -- 'heartbeats' does not exist in type
      ["/websocket", guide, { heartbeats: 5000 }],
      // @ts-expect-error -- Type 'string' is not assignable to type 'number'
      { path: "/live/:room", handler: live, opts: { pingMs: "often" } },
      // @ts-expect-error -- 'typo' does not exist in type 'LiveOpts'
      { path: "/live/:room/typo", handler: live, opts: { pingMs: 1, typo: 1 } },
    ],
  },
]);

// A handler whose opts are required cannot be routed without them.
compileRoutes([
  {
    host: "_",
    paths: [
      // @ts-expect-error -- Source has 2 element(s) but target requires 3
      ["/live", live],
      // @ts-expect-error -- Type 'undefined' is not assignable to type 'LiveOpts'
      ["/live/undefined", live, undefined],
      // @ts-expect-error -- Property 'opts' is missing
      { path: "/live/:room", handler: live },
      // Optional fields do not make the object optional: init would read them from undefined.
      // @ts-expect-error -- Source has 2 element(s) but target requires 3
      ["/websocket", guide],
      // @ts-expect-error -- Source has 2 element(s) but target requires 3
      ["/users", users],
    ],
  },
]);

// A list kept apart with `as const` is still checked where it is compiled (a literal's unknown keys only in place).
const livePaths = [["/live", live, { pingMs: "often" }]] as const;
// @ts-expect-error -- is not assignable to type 'number'
compileRoutes([{ host: "_", paths: livePaths }]);

// ---------------------------------------------------------------------------------------
// staticFile and staticDir take their options where they are built: a route gives them none.

compileRoutes([
  {
    host: "_",
    paths: [
      ["/index.html", staticFile("priv/index.html", { etag: false })],
      ["/static/[...]", staticDir("priv/static")],
      { path: "/assets/[...]", handler: staticDir("priv/assets") },
      // @ts-expect-error -- Type '{ etag: false; }' is not assignable to type 'undefined'
      ["/index2.html", staticFile("priv/index.html"), { etag: false }],
      // @ts-expect-error -- Type '{ mimetypes: string; }' is not assignable to type 'undefined'
      ["/files/[...]", staticDir("priv/static"), { mimetypes: "web" }],
      // @ts-expect-error -- Type 'string' is not assignable to type 'undefined'
      { path: "/more/[...]", handler: staticDir("priv/more"), opts: "priv/more" },
    ],
  },
]);

// Every kind of handler may declare checkOpts (RouteOptsCheck), and the type says what it is.
same<RouteOptsCheck["checkOpts"], ((opts: unknown) => void) | undefined>(true);
same<RouteOpts<typeof live>, LiveOpts>(true);
export const checkedLive: WebSocketHandler<null, LiveOpts> = {
  checkOpts(opts) {
    if (typeof (opts as Partial<LiveOpts> | undefined)?.pingMs !== "number") throw new Error("pingMs: expected a number");
  },
  init: (req, opts) => upgrade(req, null, { idleTimeout: opts.pingMs * 2 }),
  websocketHandle: (_frame, state) => ok(state),
};
export const checkedPoll: LoopHandler<null, LiveOpts> = {
  checkOpts(opts) {
    if (opts === undefined) throw new Error("opts: required");
  },
  init: (req) => loop(req, null),
  info: (_msg, _req, state) => ok(state),
};
const asRouteOptsCheck: readonly RouteOptsCheck[] = [checkedLive, checkedPoll, hello];
void asRouteOptsCheck;
