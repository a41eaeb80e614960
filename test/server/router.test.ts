import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { CorralError, compileRoutes, ok, startClear, stopListener, upgrade, type Handler, type HostRoute, type HttpHandler, type PathRoute, type WebSocketHandler } from "../../src/index.js";
import type { RouteOptsCheck } from "../../src/behaviors/request.js";
import { matchRoute, splitHost, splitPath, type Dispatch, type RouteMatch } from "../../src/server/router.js";

/** A named handler, so a table can say which route won. */
function h(name: string): Handler {
  return { init: () => name };
}
const nameOf = (m: RouteMatch): string | number => ("status" in m ? m.status : (m.handler.init as () => string)());

/** What a match means, in one comparable shape. */
function summary(m: RouteMatch): unknown {
  if ("status" in m) return m.status;
  return { handler: nameOf(m), bindings: { ...m.bindings }, hostInfo: m.hostInfo, pathInfo: m.pathInfo };
}

type Expected = string | 400 | 404 | { handler: string; bindings?: Record<string, string>; hostInfo?: string[]; pathInfo?: string[] };

function expectMatch(d: Dispatch, host: string, path: string, want: Expected): void {
  const got = matchRoute(d, host, path);
  if (typeof want === "number") {
    expect(summary(got), `${host} ${path}`).toBe(want);
    return;
  }
  const w = typeof want === "string" ? { handler: want } : want;
  expect(summary(got), `${host} ${path}`).toEqual({
    handler: w.handler,
    bindings: w.bindings ?? {},
    hostInfo: w.hostInfo,
    pathInfo: w.pathInfo,
  });
}

function badRoute(routes: unknown, ...mentions: string[]): void {
  let thrown: unknown;
  try {
    compileRoutes(routes as HostRoute[]);
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `expected compileRoutes to throw for ${JSON.stringify(mentions)}`).toBeInstanceOf(CorralError);
  expect((thrown as CorralError).code).toBe("ERR_BADARG");
  for (const m of mentions) expect((thrown as CorralError).message).toContain(m);
}

describe("splitPath (cowboy_router:split_path)", () => {
  test.each([
    ["/", []],
    ["/extend//cowboy", ["extend", "", "cowboy"]],
    ["/users", ["users"]],
    ["/users/", ["users"]],
    ["/users/42/friends", ["users", "42", "friends"]],
    ["/users/a%20b/c%21d", ["users", "a b", "c!d"]],
    ["//", [""]],
    ["/a%2Fb/c", ["a/b", "c"]],
    ["/%D0%BF%D1%83%D1%82%D1%8C", ["путь"]],
    ["/a+b", ["a+b"]],
    // remove_dot_segments
    ["/a/b/c/./../../g", ["a", "g"]],
    ["/mid/content=5/../6", ["mid", "6"]],
    ["/../a", ["a"]],
    ["/a/%2E%2E/b", ["b"]],
    ["/a/.", ["a"]],
  ])("%s", (path, want) => {
    expect(splitPath(path)).toEqual(want);
  });

  test.each([["nope"], [""], ["*"], ["/a%zz"], ["/a%2"], ["/a b"], ["/a|b"], ["/%FF"], ["/é"], ["/a\\b"]])("malformed %j", (path) => {
    expect(splitPath(path)).toBeUndefined();
  });
});

describe("splitHost (cowboy_router:split_host)", () => {
  test.each([
    ["", []],
    ["*", ["*"]],
    ["cowboy.ninenines.eu", ["eu", "ninenines", "cowboy"]],
    ["ninenines.eu", ["eu", "ninenines"]],
    ["ninenines.eu.", ["eu", "ninenines"]],
    [".ninenines.eu", ["eu", "ninenines"]],
    ["NineNines.EU", ["eu", "ninenines"]],
    ["a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z", "zyxwvutsrqponmlkjihgfedcba".split("")],
  ])("%j", (host, want) => {
    expect(splitHost(host)).toEqual(want);
  });
  test("an empty label is malformed", () => {
    expect(splitHost("a..b")).toBeUndefined();
  });
});

describe("match (cowboy_router match_test_)", () => {
  const d = compileRoutes([
    { host: "www.:_.ninenines.eu", paths: [["/users/:_/mails", h("match_any_subdomain_users")]] },
    {
      host: "ninenines.eu",
      paths: [
        ["/users/:id/friends", h("match_extend_users_friends")],
        ["_", h("match_extend")],
      ],
    },
    { host: ":var.ninenines", paths: [["/threads/:var", h("match_duplicate_vars"), ["we", { expect: "two" }, "var", "here"]]] },
    { host: "erlang.:ext", paths: [["_", h("match_erlang_ext")]] },
    {
      host: "_",
      paths: [
        ["/users/:id/friends", h("match_users_friends")],
        ["_", h("match_any")],
      ],
    },
  ]);
  test.each<[string, string, Expected]>([
    ["any", "/", "match_any"],
    ["www.any.ninenines.eu", "/users/42/mails", "match_any_subdomain_users"],
    ["www.ninenines.eu", "/users/42/mails", "match_any"],
    ["www.ninenines.eu", "/", "match_any"],
    ["www.any.ninenines.eu", "/not_users/42/mails", 404],
    ["ninenines.eu", "/", "match_extend"],
    ["ninenines.eu", "/users/42/friends", { handler: "match_extend_users_friends", bindings: { id: "42" } }],
    ["erlang.fr", "/", { handler: "match_erlang_ext", bindings: { ext: "fr" } }],
    ["any", "/users/444/friends", { handler: "match_users_friends", bindings: { id: "444" } }],
    ["any", "/users//friends", { handler: "match_users_friends", bindings: { id: "" } }],
    ["threads.ninenines", "/threads/threads", { handler: "match_duplicate_vars", bindings: { var: "threads" } }],
    ["threads.ninenines", "/threads/other", 404],
  ])("%s %s", (host, path, want) => expectMatch(d, host, path, want));

  test("opts come back as given", () => {
    const m = matchRoute(d, "x.ninenines", "/threads/x");
    expect("status" in m ? m : m.opts).toEqual(["we", { expect: "two" }, "var", "here"]);
  });
});

describe("hostInfo and pathInfo (cowboy_router match_info_test_)", () => {
  const d = compileRoutes([
    { host: "www.ninenines.eu", paths: [["/pathinfo/is/next/[...]", h("match_path")]] },
    { host: "[...]ninenines.eu", paths: [["_", h("match_any")]] },
  ]);
  test.each<[string, string, Expected]>([
    ["ninenines.eu", "/", { handler: "match_any", hostInfo: [] }],
    ["bugs.ninenines.eu", "/", { handler: "match_any", hostInfo: ["bugs"] }],
    ["cowboy.bugs.ninenines.eu", "/", { handler: "match_any", hostInfo: ["cowboy", "bugs"] }],
    ["www.ninenines.eu", "/pathinfo/is/next", { handler: "match_path", pathInfo: [] }],
    ["www.ninenines.eu", "/pathinfo/is/next/path_info", { handler: "match_path", pathInfo: ["path_info"] }],
    ["www.ninenines.eu", "/pathinfo/is/next/foo/bar", { handler: "match_path", pathInfo: ["foo", "bar"] }],
    ["www.ninenines.eu", "/pathinfo/is/next/a%2Fb/./c/../d", { handler: "match_path", pathInfo: ["a/b", "d"] }],
  ])("%s %s", (host, path, want) => expectMatch(d, host, path, want));

  test('"[...].ninenines.eu" with a dot is the same as "[...]ninenines.eu"', () => {
    const d2 = compileRoutes([{ host: "[...].ninenines.eu", paths: [["/", h("a")]] }]);
    expectMatch(d2, "x.y.ninenines.eu", "/", { handler: "a", hostInfo: ["x", "y"] });
    expectMatch(d2, "ninenines.eu", "/", { handler: "a", hostInfo: [] });
    expectMatch(d2, "ninenines.org", "/", 400);
  });

  test('"/hats[...]" is the same as "/hats/[...]" (Cowboy)', () => {
    const d2 = compileRoutes([{ host: "_", paths: [["/hats[...]", h("a")]] }]);
    expectMatch(d2, "x", "/hats/a/b", { handler: "a", pathInfo: ["a", "b"] });
    expectMatch(d2, "x", "/hats", { handler: "a", pathInfo: [] });
  });
});

describe("the routing guide's match syntax", () => {
  test.each<[string, HostRoute["paths"], string, string, Expected]>([
    ["_", [["/", h("root")]], "any", "/", "root"],
    ["_", [["/path/to/resource", h("r")]], "any", "/path/to/resource/", "r"],
    ["_", [["/path/to/resource/", h("r")]], "any", "/path/to/resource", "r"],
    ["_", [["/path/to/resource", h("r")]], "any", "/path/to", 404],
    ["_", [["/путь/к/ресурсу/", h("r")]], "any", "/%D0%BF%D1%83%D1%82%D1%8C/%D0%BA/%D1%80%D0%B5%D1%81%D1%83%D1%80%D1%81%D1%83", "r"],
    ["cowboy.example.org", [["_", h("r")]], "cowboy.example.org", "/", "r"],
    ["cowboy.example.org.", [["_", h("r")]], "cowboy.example.org", "/", "r"],
    [".cowboy.example.org", [["_", h("r")]], "cowboy.example.org.", "/", "r"],
    ["Cowboy.Example.ORG", [["_", h("r")]], "COWBOY.example.org", "/", "r"],
    ["некий.сайт.рф.", [["_", h("r")]], "некий.сайт.рф", "/", "r"],
    ["cowboy.example.org", [["_", h("r")]], "example.org", "/", 400],
    ["cowboy.example.org", [["_", h("r")]], "www.cowboy.example.org", "/", 400],
    [
      ":subdomain.example.org",
      [["/hats/:name/prices", h("r")]],
      "test.example.org",
      "/hats/wild_cowboy_legendary/prices",
      { handler: "r", bindings: { subdomain: "test", name: "wild_cowboy_legendary" } },
    ],
    ["ninenines.:_", [["/hats/:_", h("r")]], "ninenines.eu", "/hats/anything", "r"],
    ["ninenines.:_", [["/hats/:_", h("r")]], "ninenines.fr", "/hats", 404],
    ["[www.]ninenines.eu", [["/horses", h("r")]], "ninenines.eu", "/horses", "r"],
    ["[www.]ninenines.eu", [["/horses", h("r")]], "www.ninenines.eu", "/horses", "r"],
    ["[www.]ninenines.eu", [["/horses", h("r")]], "ftp.ninenines.eu", "/horses", 400],
    ["_", [["/hats/[page/:number]", h("r")]], "x", "/hats", "r"],
    ["_", [["/hats/[page/:number]", h("r")]], "x", "/hats/page/2", { handler: "r", bindings: { number: "2" } }],
    ["_", [["/hats/[page/:number]", h("r")]], "x", "/hats/page", 404],
    ["_", [["/hats/[page/[:number]]", h("r")]], "x", "/hats", "r"],
    ["_", [["/hats/[page/[:number]]", h("r")]], "x", "/hats/page", "r"],
    ["_", [["/hats/[page/[:number]]", h("r")]], "x", "/hats/page/3", { handler: "r", bindings: { number: "3" } }],
    ["_", [["/hats/[page/[:number]]", h("r")]], "x", "/hats/page/3/4", 404],
    ["_", [["/hats/[...]", h("r")]], "x", "/hats", { handler: "r", pathInfo: [] }],
    ["_", [["/hats/[...]", h("r")]], "x", "/hats/a/b/", { handler: "r", pathInfo: ["a", "b"] }],
    ["[...]ninenines.eu", [["/hats/[...]", h("r")]], "a.b.ninenines.eu", "/hats/c", { handler: "r", hostInfo: ["a", "b"], pathInfo: ["c"] }],
    ["_", [["/hats/:name/:name", h("r")]], "x", "/hats/top/top", { handler: "r", bindings: { name: "top" } }],
    ["_", [["/hats/:name/:name", h("r")]], "x", "/hats/top/hat", 404],
    ["_", [["/hats/:name/[:name]", h("r")]], "x", "/hats/top", { handler: "r", bindings: { name: "top" } }],
    ["_", [["/hats/:name/[:name]", h("r")]], "x", "/hats/top/top", { handler: "r", bindings: { name: "top" } }],
    ["_", [["/hats/:name/[:name]", h("r")]], "x", "/hats/top/hat", 404],
    [":user.github.com", [["/:user/[...]", h("r")]], "essen.github.com", "/essen/cowboy", { handler: "r", bindings: { user: "essen" }, pathInfo: ["cowboy"] }],
    [":user.github.com", [["/:user/[...]", h("r")]], "essen.github.com", "/other/cowboy", 404],
    ["_", [["_", h("r")]], "x", "/anything/at/all", "r"],
    ["_", [["/foo/bar:blah", h("r")]], "x", "/foo/bar:blah", "r"],
    ["_", [["/_", h("r")]], "x", "/_", "r"],
    ["_", [["/_", h("r")]], "x", "/y", 404],
    ["_", [["/files/:name", h("r")]], "x", "/files/a%2Fb", { handler: "r", bindings: { name: "a/b" } }],
    ["_", [["/files/:a/:b", h("r")]], "x", "/files/a%2Fb", 404],
    ["_", [["/a/b", h("r")]], "x", "/a/c/../b", "r"],
    ["_", [["/a/b", h("r")]], "x", "/a/./b", "r"],
    ["_", [["/a/b", h("r")]], "x", "/a%2Fb", 404],
    ["_", [["/hello world", h("r")]], "x", "/hello%20world", "r"],
    ["_", [["/", h("r")]], "x", "/a%zz", 400],
    ["_", [["/", h("r")]], "x", "not-a-path", 400],
    ["_", [["/", h("r")]], "x", "/a b", 400],
    ["[...]", [["/", h("r")]], "a..b", "/", 400],
    // As Cowboy, a leading "_" host does not look at the host at all.
    ["_", [["/", h("r")]], "a..b", "/", "r"],
    ["_", [["/[a]/[b]", h("r")]], "x", "/", "r"],
    ["_", [["/[a]/[b]", h("r")]], "x", "/b", "r"],
    ["_", [["/[a]/[b]", h("r")]], "x", "/a", "r"],
    ["_", [["/[a]/[b]", h("r")]], "x", "/a/b", "r"],
    ["_", [["/[a]/[b]", h("r")]], "x", "/b/a", 404],
    ["_", [["/hats[/page]", h("r")]], "x", "/hats/page", "r"],
    ["_", [["/:a-b/:c_d", h("r")]], "x", "/1/2", { handler: "r", bindings: { "a-b": "1", c_d: "2" } }],
  ])("host %j path %j: %s %s", (host, paths, reqHost, reqPath, want) => {
    expectMatch(compileRoutes([{ host, paths }]), reqHost, reqPath, want);
  });

  test('the path "*" (OPTIONS *) matches "*" and "_" routes only', () => {
    const d = compileRoutes([{ host: "_", paths: [["/", h("root")], ["*", h("star")], ["_", h("any")]] }]);
    expectMatch(d, "x", "*", "star");
    expectMatch(d, "x", "/", "root");
    expectMatch(compileRoutes([{ host: "_", paths: [["/", h("root")], ["_", h("any")]] }]), "x", "*", "any");
    expectMatch(compileRoutes([{ host: "_", paths: [["/", h("root")]] }]), "x", "*", 404);
  });

  test("bindings are null-prototype: a binding called constructor is not inherited", () => {
    const m = matchRoute(compileRoutes([{ host: "_", paths: [["/:id", h("r")]] }]), "x", "/1");
    expect("status" in m ? undefined : m.bindings["constructor"]).toBeUndefined();
  });
});

describe("order: the first route that matches wins (Cowboy's linear semantics)", () => {
  test.each<[PathRoute[], string, Expected]>([
    [[["/:a/b", h("first")], ["/x/:b", h("second")]], "/x/b", { handler: "first", bindings: { a: "x" } }],
    [[["/x/:b", h("first")], ["/:a/b", h("second")]], "/x/b", { handler: "first", bindings: { b: "b" } }],
    [[["/x/[...]", h("first")], ["/x/y", h("second")]], "/x/y", { handler: "first", pathInfo: ["y"] }],
    [[["/x/y", h("first")], ["/x/[...]", h("second")]], "/x/y", "first"],
    [[["_", h("first")], ["/x/y", h("second")]], "/x/y", "first"],
    [[["/x/y", h("first")], ["_", h("second")]], "/x/z", "second"],
    [[["/[...]", h("first")], ["/x", h("second")]], "/x", { handler: "first", pathInfo: ["x"] }],
    // Alternatives without an optional part come first, as cowboy_router:compile orders them.
    [[["/a/[:x]/[...]", h("r")]], "/a/b", { handler: "r", pathInfo: ["b"] }],
    [[["/a/[:x]/c", h("r")]], "/a/b/c", { handler: "r", bindings: { x: "b" } }],
  ])("%j %s", (paths, path, want) => {
    expectMatch(compileRoutes([{ host: "_", paths }]), "x", path, want);
  });

  test("Cowboy stops at the first host that matches: its paths decide (404, not the next host)", () => {
    const d = compileRoutes([
      { host: "example.com", paths: [["/a", h("a")]] },
      { host: "_", paths: [["/b", h("b")]] },
    ]);
    expectMatch(d, "example.com", "/b", 404);
    expectMatch(d, "other.com", "/b", "b");
    expectMatch(d, "other.com", "/a", 404);
  });

  test("a host route listed first wins over a more specific one later", () => {
    const d = compileRoutes([
      { host: "[...].com", paths: [["_", h("first")]] },
      { host: "www.example.com", paths: [["_", h("second")]] },
    ]);
    expectMatch(d, "www.example.com", "/", { handler: "first", hostInfo: ["www", "example"] });
  });

  test("the trie agrees with a linear scan on random routes", () => {
    // Reference: each route in its own dispatch, tried one by one in order.
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const pieces = ["a", "b", ":x", ":y", ":_", "[c]", "[:x]", "[a/[:y]]"];
    const values = ["a", "b", "c", "d"];
    for (let round = 0; round < 40; round++) {
      const paths: PathRoute[] = [];
      for (let i = 0; i < 12; i++) {
        const n = 1 + rand(3);
        const segs = Array.from({ length: n }, () => pieces[rand(pieces.length)]!);
        if (rand(4) === 0) segs.push("[...]");
        paths.push([`/${segs.join("/")}`, h(`r${i}`)]);
      }
      if (rand(3) === 0) paths.splice(rand(paths.length), 0, ["_", h("any")]);
      const d = compileRoutes([{ host: "_", paths }]);
      const singles = paths.map((p) => compileRoutes([{ host: "_", paths: [p] }]));
      for (let k = 0; k < 60; k++) {
        const path = "/" + Array.from({ length: rand(5) }, () => values[rand(values.length)]!).join("/");
        const linear = singles.map((s) => matchRoute(s, "x", path)).find((m) => !("status" in m)) ?? { status: 404 as const };
        expect(summary(matchRoute(d, "x", path)), `${JSON.stringify(paths.map((p) => (Array.isArray(p) ? p[0] : "")))} ${path}`).toEqual(summary(linear));
      }
    }
  });
});

describe("constraints (cowboy_router match_constraints_test)", () => {
  test("int", () => {
    const d = compileRoutes([{ host: "_", paths: [{ path: "/path/:value", handler: h("match"), constraints: { value: "int" } }] }]);
    expectMatch(d, "ninenines.eu", "/path/123", { handler: "match", bindings: { value: "123" } });
    expectMatch(d, "ninenines.eu", "/path/123/", { handler: "match", bindings: { value: "123" } });
    expectMatch(d, "ninenines.eu", "/path/-7", { handler: "match", bindings: { value: "-7" } });
    expectMatch(d, "ninenines.eu", "/path/+7", { handler: "match", bindings: { value: "+7" } });
    expectMatch(d, "ninenines.eu", "/path/NaN/", 404);
    expectMatch(d, "ninenines.eu", "/path/1.5", 404);
    expectMatch(d, "ninenines.eu", "/path/", 404);
    expectMatch(d, "ninenines.eu", "/path/-", 404);
    expectMatch(d, "ninenines.eu", "/path/12345678901234567", { handler: "match", bindings: { value: "12345678901234567" } });
    // cowboy_constraints: more than 17 digits is refused (no bignums from user input).
    expectMatch(d, "ninenines.eu", "/path/123456789012345678", 404);
  });

  test("nonempty", () => {
    const d = compileRoutes([{ host: "_", paths: [{ path: "/path/:value/more", handler: h("match"), constraints: { value: "nonempty" } }] }]);
    expectMatch(d, "ninenines.eu", "/path/something/more", { handler: "match", bindings: { value: "something" } });
    expectMatch(d, "ninenines.eu", "/path//more", 404);
  });

  test("a function validates", () => {
    const lower = (v: string): boolean => v === v.toLowerCase();
    const d = compileRoutes([{ host: "_", paths: [{ path: "/path/:username", handler: h("match"), constraints: { username: lower } }] }]);
    expectMatch(d, "ninenines.eu", "/path/essen", { handler: "match", bindings: { username: "essen" } });
    expectMatch(d, "ninenines.eu", "/path/ESSEN", 404);
  });

  test("a function transforms with { ok }, and a list runs in order on the new value", () => {
    const trim = (v: string) => ({ ok: v.replace(/^0+(?=\d)/, "") });
    const positive = (v: string): boolean => Number(v) > 0;
    const d = compileRoutes([{ host: "_", paths: [{ path: "/n/:n", handler: h("n"), constraints: { n: ["int", trim, positive] } }] }]);
    expectMatch(d, "x", "/n/007", { handler: "n", bindings: { n: "7" } });
    expectMatch(d, "x", "/n/0", 404);
    expectMatch(d, "x", "/n/x", 404);
  });

  test("a failed constraint tries the next route", () => {
    const d = compileRoutes([
      {
        host: "_",
        paths: [
          { path: "/users/:id", handler: h("by-id"), constraints: { id: "int" } },
          ["/users/:name", h("by-name")],
        ],
      },
    ]);
    expectMatch(d, "x", "/users/42", { handler: "by-id", bindings: { id: "42" } });
    expectMatch(d, "x", "/users/essen", { handler: "by-name", bindings: { name: "essen" } });
  });

  test("constraints only run on bindings that are defined (optional segments)", () => {
    const d = compileRoutes([{ host: "_", paths: [{ path: "/hats/[page/:number]", handler: h("r"), constraints: { number: "int" } }] }]);
    expectMatch(d, "x", "/hats", "r");
    expectMatch(d, "x", "/hats/page/2", { handler: "r", bindings: { number: "2" } });
    expectMatch(d, "x", "/hats/page/two", 404);
  });

  test("host constraints: a failure tries the next host", () => {
    const d = compileRoutes([
      { host: ":v.api.example.com", constraints: { v: (s) => /^v[0-9]+$/.test(s) }, paths: [["/", h("versioned")]] },
      { host: "_", paths: [["/", h("fallback")]] },
    ]);
    expectMatch(d, "v2.api.example.com", "/", { handler: "versioned", bindings: { v: "v2" } });
    expectMatch(d, "beta.api.example.com", "/", "fallback");
  });

  test("a host binding transformed by a host constraint is what the path sees", () => {
    const d = compileRoutes([
      { host: ":user.example.com", constraints: { user: (s) => ({ ok: s.replace(/-/g, "_") }) }, paths: [["/:user", h("r")]] },
    ]);
    expectMatch(d, "a-b.example.com", "/a_b", { handler: "r", bindings: { user: "a_b" } });
    expectMatch(d, "a-b.example.com", "/a-b", 404);
  });

  test("a path route may constrain a host binding", () => {
    const d = compileRoutes([
      {
        host: ":tenant.example.com",
        paths: [
          { path: "/", handler: h("numeric"), constraints: { tenant: "int" } },
          ["/", h("named")],
        ],
      },
    ]);
    expectMatch(d, "42.example.com", "/", { handler: "numeric", bindings: { tenant: "42" } });
    expectMatch(d, "acme.example.com", "/", { handler: "named", bindings: { tenant: "acme" } });
  });

  test("a constraint that throws or returns junk is a 500 carrying the error", () => {
    const boom = new Error("boom");
    const d = compileRoutes([
      {
        host: "_",
        paths: [
          {
            path: "/t/:x",
            handler: h("r"),
            constraints: {
              x: () => {
                throw boom;
              },
            },
          },
          { path: "/j/:x", handler: h("r"), constraints: { x: (() => "yes") as unknown as (v: string) => boolean } },
        ],
      },
    ]);
    expect(matchRoute(d, "x", "/t/1")).toEqual({ status: 500, error: boom });
    const junk = matchRoute(d, "x", "/j/1");
    expect("status" in junk && junk.status).toBe(500);
    expect(String((junk as { error: unknown }).error)).toContain('returned "yes"');
  });
});

describe("same binding twice (cowboy_router match_same_bindings_test)", () => {
  test.each<[HostRoute, string, string, Expected]>([
    [{ host: ":same.:same", paths: [["_", h("match")]] }, "eu.eu", "/", { handler: "match", bindings: { same: "eu" } }],
    [{ host: ":same.:same", paths: [["_", h("match")]] }, "ninenines.eu", "/", 400],
    [{ host: ":user.ninenines.eu", paths: [["/path/:user", h("match")]] }, "essen.ninenines.eu", "/path/essen", { handler: "match", bindings: { user: "essen" } }],
    [{ host: ":user.ninenines.eu", paths: [["/path/:user", h("match")]] }, "essen.ninenines.eu", "/path/essen/", { handler: "match", bindings: { user: "essen" } }],
    [{ host: ":user.ninenines.eu", paths: [["/path/:user", h("match")]] }, "essen.ninenines.eu", "/path/notessen", 404],
    [{ host: "_", paths: [["/:same/:same", h("match")]] }, "ninenines.eu", "/path/path", { handler: "match", bindings: { same: "path" } }],
    [{ host: "_", paths: [["/:same/:same", h("match")]] }, "ninenines.eu", "/path/to", 404],
  ])("%j %s %s", (route, host, path, want) => {
    expectMatch(compileRoutes([route]), host, path, want);
  });
});

describe("compileRoutes rejects malformed routes, naming them", () => {
  const ok = h("ok");
  test.each<[string, unknown, string[]]>([
    ["routes not an array", { host: "_", paths: [] }, ["expected an array"]],
    ["a host route not an object", ["_"], ["expected a host route"]],
    ["an empty host", [{ host: "", paths: [] }], ["host"]],
    ["paths not an array", [{ host: "a.com", paths: {} }], ['host "a.com"', "paths must be an array"]],
    ["a path not starting with /", [{ host: "_", paths: [["hats", ok]] }], ['path "hats"', 'start with "/"']],
    ["a path not a string", [{ host: "_", paths: [[42, ok]] }], ["path 42"]],
    ["a handler without init", [{ host: "_", paths: [["/x", {}]] }], ['path "/x"', "no init"]],
    ["a handler that is a function", [{ host: "_", paths: [["/x", () => 1]] }], ['path "/x"', "no init"]],
    ["a tuple too long", [{ host: "_", paths: [["/x", ok, {}, {}]] }], ['path "/x"', "[path, handler, opts?]"]],
    ["a path route that is a string", [{ host: "_", paths: ["/x"] }], ["a path route is"]],
    ["an unclosed [", [{ host: "_", paths: [["/hats/[page", ok]] }], ['path "/hats/[page"', '"[" without a matching "]"']],
    ["a stray ]", [{ host: "_", paths: [["/hats/page]", ok]] }], ['path "/hats/page]"', '"]" without a matching "["']],
    ["nested unbalanced", [{ host: "_", paths: [["/hats/[page/[:n]", ok]] }], ['"[" without a matching "]"']],
    ["[ in the middle of a segment", [{ host: "_", paths: [["/hats[page]", ok]] }], ['path "/hats[page]"', "middle of a segment"]],
    ["[...] not last", [{ host: "_", paths: [["/static/[...]/x", ok]] }], ['path "/static/[...]/x"', "must come last"]],
    ["[...] twice", [{ host: "_", paths: [["/[...]/[...]", ok]] }], ["must come last"]],
    ["[...] inside a segment", [{ host: "_", paths: [["/a[...]b", ok]] }], ['"[...]" inside']],
    ["[...] not first in a host", [{ host: "www.[...].eu", paths: [] }], ['host "www.[...].eu"', "must come first"]],
    ["[...] last in a host", [{ host: "ninenines.[...]", paths: [] }], ["must come first"]],
    ["an unclosed [ in a host", [{ host: "[www.example.com", paths: [] }], ['host "[www.example.com"', "without a matching"]],
    ["an empty binding name", [{ host: "_", paths: [["/users/:", ok]] }], ['path "/users/:"', "invalid binding name"]],
    ["a binding name with a dot", [{ host: "_", paths: [["/users/:id.json", ok]] }], ["invalid binding name"]],
    ["__proto__", [{ host: "_", paths: [["/:__proto__", ok]] }], ["invalid binding name"]],
    [
      "a constraint on an unknown binding",
      [{ host: "_", paths: [{ path: "/users/:id", handler: ok, constraints: { name: "int" } }] }],
      ['path "/users/:id"', 'unknown binding "name"', ":id"],
    ],
    ["a constraint on a discarded segment", [{ host: "_", paths: [{ path: "/users/:_", handler: ok, constraints: { _: "int" } }] }], ["unknown binding", "it has none"]],
    ["a host constraint on a path binding", [{ host: "_", constraints: { id: "int" }, paths: [["/:id", ok]] }], ['host "_"', 'unknown binding "id"']],
    ["an unknown constraint", [{ host: "_", paths: [{ path: "/:id", handler: ok, constraints: { id: "integer" } }] }], ['path "/:id"', '"int", "nonempty" or a function', '"integer"']],
    ["an empty constraint list", [{ host: "_", paths: [{ path: "/:id", handler: ok, constraints: { id: [] } }] }], ["is empty"]],
    ["constraints not an object", [{ host: "_", paths: [{ path: "/:id", handler: ok, constraints: "int" }] }], ["constraints must be an object"]],
    ["too many optional parts", [{ host: "_", paths: [["/" + Array.from({ length: 11 }, (_, i) => `[s${i}]`).join("/"), ok]] }], ["more than 1024 alternatives"]],
  ])("%s", (_what, routes, mentions) => badRoute(routes, ...mentions));
});

describe("route opts: the handler's checkOpts refuses bad ones once, at compileRoutes", () => {
  interface LiveOpts {
    readonly pingMs: number;
  }
  /** A WebSocket handler that knows its options, as the one that closed every connection with 1011 did not. */
  function liveHandler(): WebSocketHandler<null, LiveOpts> & RouteOptsCheck & { checked: unknown[] } {
    const checked: unknown[] = [];
    return {
      checked,
      checkOpts(opts) {
        checked.push(opts);
        if (typeof opts !== "object" || opts === null) throw new Error(`expected { pingMs }, got ${String(opts)}`);
        for (const key of Object.keys(opts)) if (key !== "pingMs") throw new Error(`unknown option ${JSON.stringify(key)}`);
        const { pingMs } = opts as { pingMs?: unknown };
        if (typeof pingMs !== "number" || !(pingMs > 0)) throw new Error(`pingMs: expected a number of ms > 0, got ${JSON.stringify(pingMs)}`);
      },
      init: (req) => upgrade(req, null),
      websocketHandle: (_frame, state) => ok(state),
    };
  }

  test.each<[string, unknown, string[]]>([
    ["an option of the wrong type", { pingMs: "often" }, ['path "/live"', 'refused the route\'s opts {"pingMs":"often"}', 'pingMs: expected a number of ms > 0, got "often"']],
    ["a typo", { pingMs: 1000, pingMS: 5 }, ['path "/live"', 'unknown option "pingMS"']],
    ["no opts for a handler that needs them", undefined, ['path "/live"', "refused the route's opts undefined", "expected { pingMs }"]],
  ])("%s: ERR_BADARG naming the route and the option", (_what, opts, mentions) => {
    const live = liveHandler();
    const route = opts === undefined ? ["/live", live] : ["/live", live, opts];
    badRoute([{ host: "_", paths: [["/", h("page")], route] }], ...mentions);
    expect(live.checked).toEqual([opts]);
  });

  test("the error keeps what checkOpts threw as its cause; a non-Error thrown is described", () => {
    const refusal = new Error("no");
    const byError: Handler = {
      init: () => null,
      checkOpts() {
        throw refusal;
      },
    };
    expect(() => compileRoutes([{ host: "_", paths: [["/a", byError]] }])).toThrow(expect.objectContaining({ code: "ERR_BADARG", cause: refusal }));
    const byString: Handler = {
      init: () => null,
      checkOpts() {
        throw "just no";
      },
    };
    badRoute([{ host: "_", paths: [["/b", byString, { x: 1 }]] }], 'path "/b"', '{"x":1}: "just no"');
  });

  test("a checkOpts that is not a function is refused", () => {
    badRoute([{ host: "_", paths: [["/c", { init: () => null, checkOpts: "pingMs" }]] }], 'path "/c"', "checkOpts must be a function", '"pingMs"');
  });

  test("each route's opts are checked once, whatever the route form; requests do not check again; init gets them", async () => {
    const seen: unknown[] = [];
    const checked: unknown[] = [];
    const page: HttpHandler<null, { readonly title: string }> = {
      checkOpts: (opts) => void checked.push(opts),
      init(req, opts) {
        seen.push(opts);
        req.reply(200, {}, opts.title);
        return { type: "ok", req, state: null };
      },
    };
    const dispatch = compileRoutes([
      {
        host: "_",
        paths: [
          ["/a", page, { title: "A" }],
          { path: "/b/:n", handler: page, opts: { title: "B" }, constraints: { n: "int" } },
        ],
      },
    ]);
    expect(checked).toEqual([{ title: "A" }, { title: "B" }]);
    const { port } = await startClear("router-opts", { port: 0 }, { dispatch });
    try {
      for (const path of ["/a", "/b/1", "/a"]) expect((await fetch(`http://127.0.0.1:${port}${path}`)).status).toBe(200);
    } finally {
      await stopListener("router-opts");
    }
    expect(seen).toEqual([{ title: "A" }, { title: "B" }, { title: "A" }]);
    expect(checked).toHaveLength(2);
  });
});

describe("scale: matching does not scan every route", () => {
  test("10,000 routes: the right one, and fast", () => {
    const paths: PathRoute[] = [];
    for (let i = 0; i < 10_000; i++) paths.push([`/api/v1/res${i}/:id/[:action]`, h(`r${i}`)]);
    paths.push(["/api/v1/:res/:id", h("generic")]);
    const d = compileRoutes([{ host: "_", paths }]);
    expectMatch(d, "x", "/api/v1/res9999/7", { handler: "r9999", bindings: { id: "7" } });
    expectMatch(d, "x", "/api/v1/res5000/7/edit", { handler: "r5000", bindings: { id: "7", action: "edit" } });
    expectMatch(d, "x", "/api/v1/other/7", { handler: "generic", bindings: { res: "other", id: "7" } });
    expectMatch(d, "x", "/api/v2/res1/7", 404);
    const t0 = performance.now();
    for (let i = 0; i < 20_000; i++) matchRoute(d, "x", `/api/v1/res${i % 10_000}/7`);
    const perMatch = (performance.now() - t0) / 20_000;
    // A linear scan over 10,000 routes costs milliseconds per match; the trie is microseconds.
    expect(perMatch).toBeLessThan(0.1);
  });
});

describe("through a real listener", () => {
  const echo: HttpHandler<null> = {
    init(req) {
      req.reply(200, { "content-type": "application/json" }, JSON.stringify({ bindings: req.bindings, hostInfo: req.hostInfo ?? null, pathInfo: req.pathInfo ?? null }));
      return { type: "ok", req, state: null };
    },
  };
  const plain: HttpHandler<null> = {
    init(req) {
      req.reply(200, {}, JSON.stringify(req.bindings));
      return { type: "ok", req, state: null };
    },
  };
  let port = 0;

  beforeAll(async () => {
    const dispatch = compileRoutes([
      { host: ":sub.example.com", paths: [["/users/:id", plain]] },
      { host: "[...].static.test", paths: [["/files/[...]", echo]] },
      {
        host: "127.0.0.1",
        paths: [
          ["/hats/[page/[:number]]", plain],
          { path: "/n/:n", handler: plain, constraints: { n: "int" } },
          ["/:a/:a", plain],
        ],
      },
    ]);
    port = (await startClear("router-e2e", { port: 0 }, { dispatch })).port;
  });
  afterAll(async () => {
    await stopListener("router-e2e");
  });

  function get(path: string, host?: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const r = request({ host: "127.0.0.1", port, path, headers: host === undefined ? {} : { host } }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      });
      r.on("error", reject);
      r.end();
    });
  }

  test("bindings reach the Req (fetch)", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/hats/page/12`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ number: "12" });
    expect(await (await fetch(`http://127.0.0.1:${port}/hats`)).json()).toEqual({});
    expect(await (await fetch(`http://127.0.0.1:${port}/n/5`)).json()).toEqual({ n: "5" });
    expect(await (await fetch(`http://127.0.0.1:${port}/same/same`)).json()).toEqual({ a: "same" });
  });

  test("host bindings, hostInfo and pathInfo reach the Req", async () => {
    expect(await get("/users/42", "Shop.Example.com")).toEqual({ status: 200, body: JSON.stringify({ sub: "shop", id: "42" }) });
    const r = await get("/files/css/a%2Fb.css", "cdn.eu.static.test:8080");
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ bindings: {}, hostInfo: ["cdn", "eu"], pathInfo: ["css", "a/b.css"] });
  });

  test("404 when the host matched but no path did, a failed constraint included", async () => {
    expect((await fetch(`http://127.0.0.1:${port}/nope/x/y`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${port}/n/five`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${port}/one/two`)).status).toBe(404);
    expect((await get("/other", "shop.example.com")).status).toBe(404);
  });

  test("400 when no host matched, or the path is malformed", async () => {
    expect((await get("/users/42", "example.org")).status).toBe(400);
    expect((await get("/hats/%zz")).status).toBe(400);
  });
});
