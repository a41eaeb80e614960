import type { Handler } from "../actors/request.js";
import { badarg, describe } from "../runtime/errors.js";

/** One path of a host: Cowboy's {PathMatch, Handler, InitialState}. */
export type PathRoute = readonly [path: string, handler: Handler, opts?: unknown];

/** Cowboy's {HostMatch, PathsList}. */
export interface HostRoute {
  readonly host: string;
  readonly paths: readonly PathRoute[];
}

/** A token of a compiled host or path pattern. */
type Token =
  | { readonly kind: "literal"; readonly value: string }
  | { readonly kind: "bind"; readonly name: string }
  | { readonly kind: "discard" }
  | { readonly kind: "rest" };

interface CompiledPath {
  /** undefined: "_", any path. */
  readonly tokens: readonly Token[] | undefined;
  readonly pattern: string;
  readonly handler: Handler;
  readonly opts: unknown;
}

interface CompiledHost {
  /** Labels right to left; undefined: "_", any host. */
  readonly tokens: readonly Token[] | undefined;
  readonly paths: readonly CompiledPath[];
}

/** The compiled routing table (cowboy_router:compile/1). */
export interface Dispatch {
  readonly hosts: readonly CompiledHost[];
}

export type RouteMatch =
  | {
      readonly handler: Handler;
      readonly opts: unknown;
      readonly pattern: string;
      readonly bindings: Record<string, string>;
      readonly pathInfo: string[] | undefined;
      readonly hostInfo: string[] | undefined;
    }
  | { readonly status: 400 | 404 };

function compileToken(part: string, where: string): Token {
  if (part === "[...]") return { kind: "rest" };
  if (part === ":_") return { kind: "discard" };
  if (part.startsWith(":")) {
    const name = part.slice(1);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw badarg(`compileRoutes: invalid binding ${JSON.stringify(part)} in ${where}`);
    return { kind: "bind", name };
  }
  if (/[[\]:]/.test(part)) throw badarg(`compileRoutes: unsupported pattern ${JSON.stringify(part)} in ${where}`);
  return { kind: "literal", value: part };
}

function checkRest(tokens: Token[], where: string): Token[] {
  const i = tokens.findIndex((t) => t.kind === "rest");
  if (i >= 0 && i !== tokens.length - 1) throw badarg(`compileRoutes: [...] must come last in ${where}`);
  return tokens;
}

function compilePath(path: string): readonly Token[] | undefined {
  if (path === "_") return undefined;
  if (typeof path !== "string" || !path.startsWith("/")) throw badarg(`compileRoutes: a path must be "_" or start with "/", got ${describe(path)}`);
  const parts = path.split("/").slice(1);
  if (parts.length === 1 && parts[0] === "") return [];
  return checkRest(parts.map((p) => compileToken(p, JSON.stringify(path))), JSON.stringify(path));
}

function compileHost(host: string): readonly Token[] | undefined {
  if (host === "_") return undefined;
  if (typeof host !== "string" || host.length === 0) throw badarg(`compileRoutes: a host must be "_" or a host pattern, got ${describe(host)}`);
  const labels = host.replace(/^\.|\.$/g, "").split(".");
  const tokens = labels.map((l) => compileToken(l, JSON.stringify(host)));
  if (tokens.findIndex((t) => t.kind === "rest") > 0) throw badarg(`compileRoutes: [...] must come first in host ${JSON.stringify(host)}`);
  return tokens.reverse();
}

/** Compiles routes once; a malformed route throws here, naming it. */
export function compileRoutes(routes: readonly HostRoute[]): Dispatch {
  if (!Array.isArray(routes)) throw badarg(`compileRoutes: expected an array of { host, paths }, got ${describe(routes)}`);
  const hosts = routes.map((route: HostRoute): CompiledHost => {
    if (typeof route !== "object" || route === null || !Array.isArray(route.paths)) {
      throw badarg(`compileRoutes: expected { host, paths: [...] }, got ${describe(route)}`);
    }
    return {
      tokens: compileHost(route.host),
      paths: route.paths.map((entry: PathRoute): CompiledPath => {
        if (!Array.isArray(entry) || entry.length < 2) throw badarg(`compileRoutes: a path route is [path, handler, opts?], got ${describe(entry)}`);
        const [pattern, handler, opts] = entry;
        if (typeof handler !== "object" || handler === null || typeof handler.init !== "function") {
          throw badarg(`compileRoutes: the handler for ${JSON.stringify(pattern)} has no init function`);
        }
        return { tokens: compilePath(pattern), pattern, handler, opts };
      }),
    };
  });
  return { hosts };
}

/** Matches tokens against values; bindings collects what they bind. false on mismatch. */
function matchTokens(tokens: readonly Token[], values: readonly string[], bindings: Record<string, string>): string[] | undefined | false {
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.kind === "rest") return values.slice(i);
    if (i >= values.length) return false;
    const v = values[i]!;
    if (t.kind === "literal") {
      if (t.value !== v) return false;
    } else if (t.kind === "bind") {
      const had = bindings[t.name];
      if (had !== undefined && had !== v) return false;
      bindings[t.name] = v;
    }
  }
  return tokens.length === values.length ? undefined : false;
}

/** Path segments, percent-decoded, with dot-segments removed; undefined when malformed. */
export function splitPath(path: string): string[] | undefined {
  if (!path.startsWith("/")) return path === "*" ? [] : undefined;
  const out: string[] = [];
  const raw = path.split("/");
  for (let i = 1; i < raw.length; i++) {
    let seg: string;
    try {
      seg = decodeURIComponent(raw[i]!);
    } catch {
      return undefined;
    }
    if (seg === ".") continue;
    if (seg === "..") out.pop();
    else if (seg !== "" || i < raw.length - 1) out.push(seg);
  }
  return out;
}

/** cowboy_router:execute: host first (right to left), then the host's paths in order. */
export function matchRoute(dispatch: Dispatch, host: string, path: string): RouteMatch {
  const labels = host.replace(/^\.|\.$/g, "").split(".").reverse();
  const segments = splitPath(path);
  if (segments === undefined) return { status: 400 };
  let hostMatched = false;
  for (const h of dispatch.hosts) {
    const hostBindings: Record<string, string> = {};
    let hostInfo: string[] | undefined;
    if (h.tokens !== undefined) {
      const m = matchTokens(h.tokens, labels, hostBindings);
      if (m === false) continue;
      hostInfo = m?.reverse();
    }
    hostMatched = true;
    for (const p of h.paths) {
      const bindings = { ...hostBindings };
      let pathInfo: string[] | undefined;
      if (p.tokens !== undefined) {
        const m = matchTokens(p.tokens, segments, bindings);
        if (m === false) continue;
        pathInfo = m;
      }
      return { handler: p.handler, opts: p.opts, pattern: p.pattern, bindings, pathInfo, hostInfo };
    }
    // Cowboy stops at the first matching host: its paths decide.
    return { status: 404 };
  }
  return { status: hostMatched ? 404 : 400 };
}
