// cowboy_router: routes compiled into a trie of hosts and paths, with bindings and constraints.
/**
 * cowboy_router: compile host and path patterns once, then match each request against them.
 *
 * Syntax (Cowboy's, see docs/routing.md): "_" matches any host or path; ":name" binds a
 * segment (a label for hosts), ":_" matches one and discards it; "[...]" captures the rest
 * (pathInfo, or hostInfo for hosts, where it stands leftmost); "[...]" brackets around other
 * text make it optional, nested or not ("/hats/[page/[:number]]", "[www.]example.com"); a
 * binding used twice must match the same value; constraints ("int", "nonempty", functions)
 * run after a structural match and a failed one makes matching try the next route.
 *
 * Matching is first-match-wins in route order, as Cowboy's linear scan, but it does not scan:
 * each host's paths (and the hosts themselves, right to left) are compiled into a trie keyed
 * on literal segments with one wildcard child per node. A lookup collects the few routes
 * whose shape fits the request, then tries them in route order.
 */
import type { Handler } from "../behaviors/request.js";
import { badarg, CorralError, describe } from "../runtime/errors.js";

/**
 * A constraint function: true accepts the value, false rejects it (matching goes on with the
 * next route), { ok: v } accepts it and replaces the binding's value with v. A function that
 * throws or returns anything else is a bug: the request gets a 500, as a crash in Cowboy's
 * router would.
 */
export type RouteConstraintFn = (value: string) => boolean | { readonly ok: string };

/**
 * "int": an optionally signed decimal integer of at most 17 digits (cowboy_constraints:int;
 * the binding stays a string, use Number() on it). "nonempty": not "". Or a function.
 */
export type RouteConstraint = "int" | "nonempty" | RouteConstraintFn;

/** Binding name → one constraint, or a list applied in order (each sees the previous one's value). */
export type RouteConstraints = Readonly<Record<string, RouteConstraint | readonly RouteConstraint[]>>;

/** A path route as an object: the only form that takes constraints (Cowboy's {PathMatch, Fields, Handler, Opts}). */
export interface PathRouteObject {
  readonly path: string;
  readonly handler: Handler;
  readonly opts?: unknown;
  readonly constraints?: RouteConstraints;
}

/** One path of a host: Cowboy's {PathMatch, Handler, InitialState}, or the object form with constraints. */
export type PathRoute = readonly [path: string, handler: Handler, opts?: unknown] | PathRouteObject;

/** Cowboy's {HostMatch, PathsList} or {HostMatch, Fields, PathsList}. */
export interface HostRoute {
  readonly host: string;
  /** Constraints on the host's bindings; a failure makes matching try the next host. */
  readonly constraints?: RouteConstraints;
  readonly paths: readonly PathRoute[];
}

/** The opts a handler's init declares (unknown when it declares none): what its routes must give. */
export type RouteOpts<H> = H extends { init(req: never, opts: infer O): unknown } ? O : unknown;

/**
 * A path route as compileRoutes checks it: its opts typed as its handler's init declares
 * them, so a wrong or unknown option is an error on that option; and required unless
 * undefined is among them. Everything else stays as written.
 */
type CheckedPath<P> =
  P extends readonly [infer Path, infer H]
    ? undefined extends RouteOpts<H> ? P : readonly [path: Path, handler: H, opts: RouteOpts<H>]
    : P extends readonly [infer Path, infer H, unknown]
      ? readonly [path: Path, handler: H, opts: RouteOpts<H>]
      : P extends { readonly handler: infer H }
        ? undefined extends RouteOpts<H>
          ? { readonly [K in keyof P]: K extends "opts" ? RouteOpts<H> : P[K] }
          : { readonly [K in keyof P | "opts"]: K extends "opts" ? RouteOpts<H> : K extends keyof P ? P[K] : never }
        : P;

// Separate aliases over a type parameter keep a mapped tuple a tuple.
type CheckedPaths<P> = { readonly [I in keyof P]: CheckedPath<P[I]> };
type CheckedHost<H> = { readonly [K in keyof H]: K extends "paths" ? CheckedPaths<H[K]> : H[K] };
type CheckedRoutes<R> = { readonly [I in keyof R]: CheckedHost<R[I]> };

/** A token of one alternative of a compiled pattern. */
type Token =
  | { readonly kind: "literal"; readonly value: string }
  | { readonly kind: "bind"; readonly name: string }
  | { readonly kind: "discard" }
  | { readonly kind: "rest" };

type Check = (value: string) => boolean | { readonly ok: string };

/** Constraints compiled to [binding, checks] in the order they were written. */
type CompiledConstraints = readonly (readonly [name: string, checks: readonly Check[]])[];

/**
 * One alternative of a pattern ("/hats/[page]" has two), as stored in a trie: its position
 * in route order, where its bindings are, whether it ends with "[...]".
 */
interface Alt<R> {
  readonly seq: number;
  readonly route: R;
  /** [segment index, name] for each ":name", in pattern order. */
  readonly binds: readonly (readonly [index: number, name: string])[];
  /** The pattern ends with "[...]": what is left becomes pathInfo / hostInfo. */
  readonly rest: boolean;
  /** The pattern is "_": matches anything, pathInfo / hostInfo stay undefined. */
  readonly any: boolean;
  /** How many segments the pattern consumes before "[...]" (or in all). */
  readonly length: number;
}

class TrieNode<R> {
  literal: Map<string, TrieNode<R>> | undefined = undefined;
  wild: TrieNode<R> | undefined = undefined;
  /** Alternatives that end exactly here, in route order. */
  readonly end: Alt<R>[] = [];
  /** Alternatives whose "[...]" (or "_") starts here, in route order. */
  readonly rest: Alt<R>[] = [];
}

/** Alternatives indexed by their segments; first-match-wins order is each Alt's seq. */
class Trie<R> {
  readonly root = new TrieNode<R>();
  private seq = 0;

  add(route: R, tokens: readonly Token[] | "any"): void {
    let node = this.root;
    const binds: (readonly [number, string])[] = [];
    let rest = tokens === "any";
    let length = 0;
    if (tokens !== "any") {
      for (const t of tokens) {
        if (t.kind === "rest") {
          rest = true;
          break;
        }
        if (t.kind === "literal") {
          node.literal ??= new Map();
          let next = node.literal.get(t.value);
          if (next === undefined) node.literal.set(t.value, (next = new TrieNode()));
          node = next;
        } else {
          if (t.kind === "bind") binds.push([length, t.name]);
          node = node.wild ??= new TrieNode();
        }
        length++;
      }
    }
    const alt: Alt<R> = { seq: this.seq++, route, binds, rest, any: tokens === "any", length };
    (rest ? node.rest : node.end).push(alt);
  }

  /** The alternatives whose shape fits the segments, in route order. */
  candidates(segments: readonly string[]): readonly Alt<R>[] {
    const found: Alt<R>[][] = [];
    collect(this.root, segments, 0, found);
    if (found.length === 0) return [];
    if (found.length === 1) return found[0]!;
    return found.flat().sort((a, b) => a.seq - b.seq);
  }
}

function collect<R>(node: TrieNode<R>, segments: readonly string[], i: number, out: Alt<R>[][]): void {
  if (node.rest.length > 0) out.push(node.rest);
  if (i === segments.length) {
    if (node.end.length > 0) out.push(node.end);
    return;
  }
  const next = node.literal?.get(segments[i]!);
  if (next !== undefined) collect(next, segments, i + 1, out);
  if (node.wild !== undefined) collect(node.wild, segments, i + 1, out);
}

interface CompiledPath {
  /** The path as written: "_", "*" or "/...". */
  readonly pattern: string;
  readonly handler: Handler;
  readonly opts: unknown;
  readonly constraints: CompiledConstraints;
}

interface CompiledHost {
  /** The host as written. */
  readonly pattern: string;
  readonly constraints: CompiledConstraints;
  readonly paths: readonly CompiledPath[];
  /** Every path alternative except "*". */
  readonly pathIndex: Trie<CompiledPath>;
  /** Routes for the path "*" (OPTIONS *), and "_", in route order. */
  readonly star: readonly CompiledPath[];
}

/** The compiled routing table (cowboy_router:compile/1). Build it with compileRoutes. */
export interface Dispatch {
  /** The host routes, compiled, in the order given. */
  readonly hosts: readonly CompiledHost[];
  /** @internal Every host alternative, right to left. */
  readonly hostIndex: Trie<CompiledHost>;
  /** @internal The first host route when it is "_" without constraints: the host need not be looked at. */
  readonly anyFirst: CompiledHost | undefined;
}

export type RouteMatch =
  | {
      readonly handler: Handler;
      readonly opts: unknown;
      /** The path pattern as written, e.g. "/hats/[page/[:number]]". */
      readonly pattern: string;
      /** Host and path bindings; constraint functions may have replaced values. */
      readonly bindings: Record<string, string>;
      /** What "[...]" captured in the path; undefined without "[...]". */
      readonly pathInfo: string[] | undefined;
      /** What "[...]" captured in the host, left to right; undefined without "[...]". */
      readonly hostInfo: string[] | undefined;
    }
  /** 400: no host matched, or the path is malformed. 404: the host matched, no path did. */
  | { readonly status: 400 | 404 }
  /** A constraint function threw or returned something else than boolean | { ok: string }. */
  | { readonly status: 500; readonly error: unknown };

// ---------------------------------------------------------------------------------------------
// Compilation

/** Cowboy expands optional parts into alternatives; this many is plenty (2^10). */
const MAX_ALTERNATIVES = 1024;
const BINDING_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;
const REST = "[...]";
const REST_MARK = "\u0000";

class RouteError extends Error {}

/**
 * The alternatives of a pattern with optional parts, in Cowboy's order: for the leftmost
 * bracket, the alternatives without it come before those with it ("/hats/[page/[:n]]" gives
 * "/hats/", "/hats/page/", "/hats/page/:n"). "[...]" is not an optional part.
 */
function expand(pattern: string, sep: string): string[] {
  const out: string[] = [];
  const go = (p: string): void => {
    for (let i = 0; i < p.length; i++) {
      if (p.startsWith(REST, i)) {
        i += REST.length - 1;
        continue;
      }
      const c = p[i];
      if (c === "]") throw new RouteError(`"]" without a matching "["`);
      if (c !== "[") continue;
      const prev = p[i - 1];
      if (i > 0 && prev !== sep && prev !== "]" && p[i + 1] !== sep) {
        throw new RouteError(`"[" in the middle of a segment (optional parts start at a "${sep}")`);
      }
      let depth = 0;
      let close = -1;
      for (let j = i + 1; j < p.length; j++) {
        if (p.startsWith(REST, j)) {
          j += REST.length - 1;
        } else if (p[j] === "[") {
          depth++;
        } else if (p[j] === "]") {
          if (depth === 0) {
            close = j;
            break;
          }
          depth--;
        }
      }
      if (close < 0) throw new RouteError(`"[" without a matching "]"`);
      const before = p.slice(0, i);
      const after = p.slice(close + 1);
      go(before + after);
      go(before + p.slice(i + 1, close) + after);
      return;
    }
    if (out.length >= MAX_ALTERNATIVES) throw new RouteError(`more than ${MAX_ALTERNATIVES} alternatives from optional parts`);
    out.push(p);
  };
  go(pattern);
  return out;
}

function compileSegment(part: string, host: boolean, out: Token[]): void {
  if (part === REST) {
    out.push({ kind: "rest" });
    return;
  }
  // Cowboy's "[...]ninenines.eu" (host) and "/hats[...]" (path) forms.
  if (host && part.startsWith(REST)) {
    out.push({ kind: "rest" });
    compileSegment(part.slice(REST.length), host, out);
    return;
  }
  if (!host && part.endsWith(REST)) {
    compileSegment(part.slice(0, -REST.length), host, out);
    out.push({ kind: "rest" });
    return;
  }
  if (part.includes(REST)) throw new RouteError(`"[...]" inside ${JSON.stringify(part)}`);
  if (part.startsWith(":")) {
    const name = part.slice(1);
    if (name === "_") out.push({ kind: "discard" });
    else if (!BINDING_NAME.test(name) || name === "__proto__") {
      throw new RouteError(`invalid binding name ${JSON.stringify(part)} (letters, digits, "_" and "-", not starting with a digit)`);
    } else out.push({ kind: "bind", name });
    return;
  }
  // A colon past the start of a segment is literal, as in Cowboy ("/foo/bar:blah").
  out.push({ kind: "literal", value: host ? part.toLowerCase() : part });
}

/** Tokens of one alternative, left to right; empty segments are ignored, as in Cowboy. */
function tokenize(alternative: string, sep: string, host: boolean): Token[] {
  const tokens: Token[] = [];
  // "[...]" holds dots, the host separator: protect it while splitting.
  for (const part of alternative.replaceAll(REST, REST_MARK).split(sep)) {
    if (part !== "") compileSegment(part.replaceAll(REST_MARK, REST), host, tokens);
  }
  tokens.forEach((t, i) => {
    if (t.kind !== "rest") return;
    if (host && i !== 0) throw new RouteError(`"[...]" must come first in a host ("[...].example.com")`);
    if (!host && i !== tokens.length - 1) throw new RouteError(`"[...]" must come last in a path ("/static/[...]")`);
  });
  return tokens;
}

function bindingNames(alternatives: readonly (readonly Token[])[]): Set<string> {
  const names = new Set<string>();
  for (const tokens of alternatives) for (const t of tokens) if (t.kind === "bind") names.add(t.name);
  return names;
}

const intCheck: Check = (v) => /^[+-]?[0-9]{1,17}$/.test(v);
const nonemptyCheck: Check = (v) => v !== "";

function compileConstraints(constraints: unknown, known: ReadonlySet<string>): CompiledConstraints {
  if (constraints === undefined) return [];
  if (typeof constraints !== "object" || constraints === null || Array.isArray(constraints)) {
    throw new RouteError(`constraints must be an object { binding: constraint }, got ${describe(constraints)}`);
  }
  const out: (readonly [string, readonly Check[]])[] = [];
  for (const [name, spec] of Object.entries(constraints)) {
    if (!known.has(name)) {
      const list = known.size === 0 ? "it has none" : `it has ${[...known].map((n) => `:${n}`).join(", ")}`;
      throw new RouteError(`a constraint names the unknown binding ${JSON.stringify(name)} (${list})`);
    }
    const specs: readonly unknown[] = Array.isArray(spec) ? spec : [spec];
    if (specs.length === 0) throw new RouteError(`the constraint list for ${JSON.stringify(name)} is empty`);
    out.push([
      name,
      specs.map((s): Check => {
        if (s === "int") return intCheck;
        if (s === "nonempty") return nonemptyCheck;
        if (typeof s === "function") return s as Check;
        throw new RouteError(`the constraint for ${JSON.stringify(name)} must be "int", "nonempty" or a function, got ${describe(s)}`);
      }),
    ]);
  }
  return out;
}

function where(host: unknown, path?: unknown): string {
  return path === undefined ? `host ${describe(host)}` : `host ${describe(host)}, path ${describe(path)}`;
}

/** The handler's checkOpts, once per route: a bad option fails here, not at every request it would reach. */
function checkOpts(handler: Handler, opts: unknown, route: string): void {
  if (handler.checkOpts === undefined) return;
  if (typeof handler.checkOpts !== "function") throw badarg(`compileRoutes: ${route}: the handler's checkOpts must be a function, got ${describe(handler.checkOpts)}`);
  try {
    handler.checkOpts(opts);
  } catch (err) {
    const why = err instanceof Error ? err.message : describe(err);
    throw new CorralError("ERR_BADARG", `compileRoutes: ${route}: the handler refused the route's opts ${describe(opts)}: ${why}`, { cause: err });
  }
}

function compileHostRoute(route: unknown, hostIndex: Trie<CompiledHost>): CompiledHost {
  if (typeof route !== "object" || route === null || Array.isArray(route)) {
    throw badarg(`compileRoutes: expected a host route { host, paths: [...] }, got ${describe(route)}`);
  }
  const { host, constraints, paths } = route as { host?: unknown; constraints?: unknown; paths?: unknown };
  if (typeof host !== "string" || host === "") {
    throw badarg(`compileRoutes: a host must be "_" or a host pattern, got ${describe(host)} in ${describe(route)}`);
  }
  if (host.includes(REST_MARK)) throw badarg(`compileRoutes: ${where(host)}: a host pattern cannot contain NUL`);
  if (!Array.isArray(paths)) throw badarg(`compileRoutes: ${where(host)}: paths must be an array, got ${describe(paths)}`);
  let hostAlts: Token[][] | "any";
  let hostNames: Set<string>;
  let hostConstraints: CompiledConstraints;
  try {
    hostAlts = host === "_" ? "any" : expand(host, ".").map((a) => tokenize(a, ".", true));
    hostNames = hostAlts === "any" ? new Set<string>() : bindingNames(hostAlts);
    hostConstraints = compileConstraints(constraints, hostNames);
  } catch (err) {
    if (err instanceof RouteError) throw badarg(`compileRoutes: ${where(host)}: ${err.message}`);
    throw err;
  }
  const pathIndex = new Trie<CompiledPath>();
  const star: CompiledPath[] = [];
  const compiledPaths = (paths as unknown[]).map((entry): CompiledPath => {
    let pattern: unknown, handler: unknown, opts: unknown, pathConstraints: unknown;
    if (Array.isArray(entry)) {
      if (entry.length < 2 || entry.length > 3) {
        throw badarg(`compileRoutes: ${where(host, entry[0])}: a path route is [path, handler, opts?] or { path, handler, opts?, constraints? }, got ${describe(entry)}`);
      }
      [pattern, handler, opts] = entry as unknown[];
    } else if (typeof entry === "object" && entry !== null) {
      ({ path: pattern, handler, opts, constraints: pathConstraints } = entry as { path?: unknown; handler?: unknown; opts?: unknown; constraints?: unknown });
    } else {
      throw badarg(`compileRoutes: ${where(host)}: a path route is [path, handler, opts?] or { path, handler, opts?, constraints? }, got ${describe(entry)}`);
    }
    if (typeof pattern !== "string" || (pattern !== "_" && pattern !== "*" && !pattern.startsWith("/"))) {
      throw badarg(`compileRoutes: ${where(host, pattern)}: a path must be "_", "*" or start with "/"`);
    }
    if (pattern.includes(REST_MARK)) throw badarg(`compileRoutes: ${where(host, pattern)}: a path pattern cannot contain NUL`);
    if (typeof handler !== "object" || handler === null || typeof (handler as { init?: unknown }).init !== "function") {
      throw badarg(`compileRoutes: ${where(host, pattern)}: the handler has no init function, got ${describe(handler)}`);
    }
    checkOpts(handler as Handler, opts, where(host, pattern));
    try {
      const alts = pattern === "_" || pattern === "*" ? [] : expand(pattern, "/").map((a) => tokenize(a, "/", false));
      const known = new Set([...hostNames, ...bindingNames(alts)]);
      const compiled: CompiledPath = { pattern, handler: handler as Handler, opts, constraints: compileConstraints(pathConstraints, known) };
      if (pattern === "_") {
        pathIndex.add(compiled, "any");
        star.push(compiled);
      } else if (pattern === "*") {
        star.push(compiled);
      } else {
        for (const tokens of alts) pathIndex.add(compiled, tokens);
      }
      return compiled;
    } catch (err) {
      if (err instanceof RouteError) throw badarg(`compileRoutes: ${where(host, pattern)}: ${err.message}`);
      throw err;
    }
  });
  const compiled: CompiledHost = { pattern: host, constraints: hostConstraints, paths: compiledPaths, pathIndex, star };
  if (hostAlts === "any") hostIndex.add(compiled, "any");
  // Hosts match right to left: the trie is keyed on labels from the top-level domain down.
  else for (const tokens of hostAlts) hostIndex.add(compiled, tokens.reverse());
  return compiled;
}

// R is inferred from the naked first branch; the argument is then checked against the second.
/**
 * Compiles routes once (cowboy_router:compile/1); a malformed route, or opts its handler's
 * checkOpts refuses, throws a CorralError ERR_BADARG naming it. Written inline, each path's
 * opts are type-checked against what its handler's init declares (see docs/routing.md).
 */
export function compileRoutes<const R extends readonly HostRoute[]>(routes: [R] extends [never] ? R : CheckedRoutes<R>): Dispatch {
  if (!Array.isArray(routes)) throw badarg(`compileRoutes: expected an array of { host, paths }, got ${describe(routes)}`);
  const hostIndex = new Trie<CompiledHost>();
  const hosts = (routes as readonly unknown[]).map((route) => compileHostRoute(route, hostIndex));
  const first = hosts[0];
  const anyFirst = first !== undefined && first.pattern === "_" && first.constraints.length === 0 ? first : undefined;
  return { hosts, hostIndex, anyFirst };
}

// ---------------------------------------------------------------------------------------------
// Matching

/** RFC 3986 pchar (unreserved, sub-delims, ":" and "@"): what cow_uri:urldecode lets through unescaped. */
const PCHAR = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@") PCHAR[c.charCodeAt(0)] = 1;
const isHex = (c: number): boolean => (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);

/**
 * Path segments, each percent-decoded on its own ("%2F" stays inside its segment), with
 * dot-segments removed and a trailing "/" ignored, as cowboy_router:split_path. undefined
 * when malformed: not starting with "/", a character outside RFC 3986's pchar, a bad escape,
 * or escapes that do not decode to UTF-8.
 */
export function splitPath(path: string): string[] | undefined {
  if (typeof path !== "string" || path.charCodeAt(0) !== 47) return undefined;
  const out: string[] = [];
  const n = path.length;
  let start = 1;
  let escaped = false;
  for (let i = 1; i <= n; i++) {
    const c = i < n ? path.charCodeAt(i) : 47;
    if (c === 47) {
      // A trailing "/" adds no empty segment.
      if (i === n && start === n) break;
      let seg = path.slice(start, i);
      if (escaped) {
        try {
          seg = decodeURIComponent(seg);
        } catch {
          return undefined;
        }
        escaped = false;
      }
      start = i + 1;
      if (seg === ".") continue;
      if (seg === "..") out.pop();
      else out.push(seg);
    } else if (c === 37) {
      if (i + 2 >= n || !isHex(path.charCodeAt(i + 1)) || !isHex(path.charCodeAt(i + 2))) return undefined;
      escaped = true;
      i += 2;
    } else if (c >= 128 || PCHAR[c] === 0) {
      return undefined;
    }
  }
  return out;
}

/**
 * Host labels right to left, lower-cased, ignoring one leading and one trailing dot.
 * undefined when a label is empty ("a..b").
 */
export function splitHost(host: string): string[] | undefined {
  let h = host.toLowerCase();
  if (h.startsWith(".")) h = h.slice(1);
  if (h.endsWith(".")) h = h.slice(0, -1);
  if (h === "") return [];
  const labels = h.split(".");
  if (labels.includes("")) return undefined;
  return labels.reverse();
}

function emptyBindings(): Record<string, string> {
  return Object.create(null) as Record<string, string>;
}

/** Host bindings when the host bound nothing: never written to, never handed out. */
const NO_BINDINGS: Record<string, string> = Object.freeze(emptyBindings());

function copyBindings(base: Record<string, string>): Record<string, string> {
  const bindings = emptyBindings();
  if (base !== NO_BINDINGS) for (const k in base) bindings[k] = base[k]!;
  return bindings;
}

/**
 * Binds an alternative's ":name" segments over base, in a fresh object (NO_BINDINGS for a
 * host that binds nothing); undefined when a repeated name disagrees.
 */
function bind<R>(alt: Alt<R>, segments: readonly string[], base: Record<string, string> | undefined): Record<string, string> | undefined {
  if (base === undefined && alt.binds.length === 0) return NO_BINDINGS;
  const bindings = copyBindings(base ?? NO_BINDINGS);
  for (const [index, name] of alt.binds) {
    const value = segments[index]!;
    const had = bindings[name];
    if (had !== undefined && had !== value) return undefined;
    bindings[name] = value;
  }
  return bindings;
}

class ConstraintCrash {
  constructor(readonly error: unknown) {}
}

/** Runs constraints on the bindings they name that are defined; false when one rejects. */
function check(constraints: CompiledConstraints, bindings: Record<string, string>): boolean {
  for (const [name, checks] of constraints) {
    let value = bindings[name];
    if (value === undefined) continue;
    for (const c of checks) {
      let r: unknown;
      try {
        r = c(value);
      } catch (err) {
        throw new ConstraintCrash(err);
      }
      if (r === true) continue;
      if (r === false) return false;
      if (typeof r === "object" && r !== null && typeof (r as { ok?: unknown }).ok === "string") {
        value = (r as { ok: string }).ok;
        continue;
      }
      throw new ConstraintCrash(badarg(`the constraint on ${JSON.stringify(name)} returned ${describe(r)}; expected true, false or { ok: string }`));
    }
    bindings[name] = value;
  }
  return true;
}

function matchPaths(host: CompiledHost, path: string, base: Record<string, string>, hostInfo: string[] | undefined): RouteMatch {
  if (path === "*") {
    for (const p of host.star) {
      const bindings = copyBindings(base);
      if (check(p.constraints, bindings)) return { handler: p.handler, opts: p.opts, pattern: p.pattern, bindings, pathInfo: undefined, hostInfo };
    }
    return { status: 404 };
  }
  const segments = splitPath(path);
  if (segments === undefined) return { status: 400 };
  for (const alt of host.pathIndex.candidates(segments)) {
    const bindings = bind(alt, segments, base);
    if (bindings === undefined) continue;
    const p = alt.route;
    if (!check(p.constraints, bindings)) continue;
    const pathInfo = alt.any ? undefined : alt.rest ? segments.slice(alt.length) : undefined;
    return { handler: p.handler, opts: p.opts, pattern: p.pattern, bindings, pathInfo, hostInfo };
  }
  return { status: 404 };
}

/**
 * cowboy_router:execute: the first host that matches (right to left, constraints included)
 * decides; then its first path that matches. No host: 400; malformed path: 400; no path: 404.
 */
export function matchRoute(dispatch: Dispatch, host: string, path: string): RouteMatch {
  try {
    // As Cowboy: a leading "_" host decides without splitting the host.
    if (dispatch.anyFirst !== undefined) return matchPaths(dispatch.anyFirst, path, NO_BINDINGS, undefined);
    const labels = splitHost(host);
    if (labels === undefined) return { status: 400 };
    for (const alt of dispatch.hostIndex.candidates(labels)) {
      const bindings = bind(alt, labels, undefined);
      if (bindings === undefined) continue;
      const h = alt.route;
      if (!check(h.constraints, bindings)) continue;
      const hostInfo = alt.any ? undefined : alt.rest ? labels.slice(alt.length).reverse() : undefined;
      return matchPaths(h, path, bindings, hostInfo);
    }
  } catch (err) {
    if (err instanceof ConstraintCrash) return { status: 500, error: err.error };
    throw err;
  }
  return { status: 400 };
}
