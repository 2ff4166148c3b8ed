// Turnout dashboard: reads /api every few seconds and draws what is routed where and what is
// broken. Plain DOM, no framework, nothing fetched from anywhere but Turnout itself. Every
// value from the configuration goes in as text (textContent), never as HTML.
"use strict";

const POLL_MS = 3000;
// The API sits next to the dashboard: PREFIX/dashboard/ and PREFIX/api/.
const API = "../api/";

const state = {
  previous: null, // the last /api/traffic answer, to difference counters into rates
  rates: {}, // router -> {rps, errorShare, errorsPerSecond}
  serviceRates: {}, // the same per service
  entrypointRates: {}, // and per entry point
  data: null,
  failures: 0,
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function getJSON(path) {
  const response = await fetch(API + path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return [await response.json(), response];
}

// Every page of a list (Traefik's X-Next-Page is 1 after the last page).
async function getAll(path) {
  let items = [];
  let page = 1;
  for (;;) {
    const [body, response] = await getJSON(`${path}?per_page=1000&page=${page}`);
    items = items.concat(body);
    const next = Number(response.headers.get("X-Next-Page") || "1");
    if (next <= page) return items;
    page = next;
  }
}

function badge(status) {
  return el("span", { class: `badge ${status}`, text: status });
}

function errorList(errors) {
  if (!errors || !errors.length) return null;
  return el("ul", { class: "errors" }, errors.map((text) => el("li", { text })));
}

function chips(values) {
  return (values || []).map((value) => el("span", { class: "chip mono", text: value }));
}

function timeOf(unix) {
  return new Date(unix * 1000).toLocaleTimeString();
}

// -- rates ---------------------------------------------------------------------------------

function ratesOf(now, before, seconds) {
  const rates = {};
  for (const [name, counters] of Object.entries(now)) {
    const previous = before[name] || { requests: 0, serverErrors: 0 };
    const requests = Math.max(0, counters.requests - previous.requests);
    const errors = Math.max(0, counters.serverErrors - previous.serverErrors);
    rates[name] = {
      rps: requests / seconds,
      errorsPerSecond: errors / seconds,
      errorShare: requests ? errors / requests : 0,
    };
  }
  return rates;
}

function updateRates(traffic) {
  const previous = state.previous;
  state.previous = traffic;
  if (!traffic.available || !previous || !previous.available) return;
  const seconds = traffic.time - previous.time;
  if (seconds <= 0) return;
  state.rates = ratesOf(traffic.routers, previous.routers, seconds);
  state.serviceRates = ratesOf(traffic.services, previous.services, seconds);
  state.entrypointRates = ratesOf(traffic.entrypoints, previous.entrypoints, seconds);
}

function formatRate(value) {
  if (value === undefined) return "–";
  if (value === 0) return "0";
  return value < 10 ? value.toFixed(1) : Math.round(value).toString();
}

// -- filtering -------------------------------------------------------------------------------

function query() {
  return document.getElementById("search").value.trim().toLowerCase();
}

function problemsOnly() {
  return document.getElementById("problems-only").checked;
}

function matches(texts) {
  const q = query();
  if (!q) return true;
  return texts.some((text) => text && String(text).toLowerCase().includes(q));
}

function routerHasProblem(router) {
  const rate = state.rates[router.name];
  return router.status !== "enabled" || (rate && rate.errorsPerSecond > 0);
}

function serviceHasProblem(service) {
  return (
    service.status !== "enabled" ||
    Object.values(service.serverStatus || {}).some((status) => status !== "UP")
  );
}

// -- drawing ---------------------------------------------------------------------------------

function fillTable(id, rows, columns) {
  const body = document.querySelector(`#${id} tbody`);
  const fresh = rows.map((row) => row);
  if (!fresh.length) {
    fresh.push(el("tr", { class: "empty" }, el("td", { colspan: columns, text: "nothing here" })));
  }
  body.replaceChildren(...fresh);
}

function drawCards(data) {
  const { overview, services } = data;
  let serversDown = 0;
  let servers = 0;
  for (const service of services) {
    for (const status of Object.values(service.serverStatus || {})) {
      servers += 1;
      if (status !== "UP") serversDown += 1;
    }
  }
  let rps = 0;
  let errors = 0;
  for (const rate of Object.values(state.rates)) {
    rps += rate.rps;
    errors += rate.errorsPerSecond;
  }
  const section = (label, counts) =>
    card(
      label,
      counts.total,
      counts.errors ? "bad" : counts.warnings ? "warn" : "",
      `${counts.warnings} warning(s), ${counts.errors} error(s)`,
    );
  const trafficKnown = data.traffic.available;
  document.getElementById("cards").replaceChildren(
    section("HTTP routers", overview.http.routers),
    section("HTTP services", overview.http.services),
    section("HTTP middlewares", overview.http.middlewares),
    card("Servers down", `${serversDown} / ${servers}`, serversDown ? "bad" : "", "from health checks"),
    card("Requests / s", trafficKnown ? formatRate(rps) : "–", "", "all routers"),
    card("5xx / s", trafficKnown ? formatRate(errors) : "–", errors ? "bad" : "", "all routers"),
  );
}

function card(label, value, level, detail) {
  return el(
    "div",
    { class: `card ${level}` },
    el("div", { class: "value", text: value }),
    el("div", { class: "label", text: label }),
    el("div", { class: "detail muted", text: detail }),
  );
}

function drawProblems(data) {
  const items = [];
  for (const provider of data.providers) {
    if (provider.lastError) {
      items.push(["bad", `Provider ${provider.name}: its last update was refused at ` +
        `${timeOf(provider.lastError.time)} (${provider.lastError.errors.length} error(s), below)`]);
    }
    if (provider.unreachable) {
      items.push(["bad", `Provider ${provider.name} cannot read its source: ${provider.unreachable}`]);
    }
  }
  for (const service of data.services) {
    const statuses = Object.entries(service.serverStatus || {});
    for (const [url, status] of statuses) {
      if (status === "UP") continue;
      const why = (service.serverReasons || {})[url];
      items.push(["bad", `Server ${url} of service ${service.name} is ${status}` +
        (why ? `: ${why}` : "")]);
    }
    if (statuses.length && statuses.every(([, status]) => status !== "UP")) {
      items.push(["bad", `Service ${service.name} has no server UP: its routers answer 503`]);
    }
  }
  for (const router of data.routers) {
    if (router.status === "disabled") items.push(["bad", `Router ${router.name} is disabled`]);
    else if (router.status === "warning") items.push(["warn", `Router ${router.name} has warnings`]);
    const rate = state.rates[router.name];
    if (rate && rate.errorsPerSecond > 0) {
      items.push([rate.errorShare >= 0.5 ? "bad" : "warn",
        `Router ${router.name}: ${Math.round(rate.errorShare * 100)} % of ` +
        `answers are 5xx (${formatRate(rate.errorsPerSecond)}/s)`]);
    }
  }
  const list = document.getElementById("problems");
  list.replaceChildren(...items.map(([level, text]) => el("li", { class: level, text })));
  document.getElementById("problems-section").hidden = !items.length;
}

function drawRefused(data) {
  const blocks = data.providers
    .filter((provider) => provider.lastError)
    .map((provider) =>
      el(
        "div",
        { class: "refusal", "data-provider": provider.name },
        el("h3", { text: `${provider.name} (${provider.source}), refused at ` +
          timeOf(provider.lastError.time) }),
        el(
          "ul",
          {},
          provider.lastError.errors.map((error) =>
            el("li", { class: "mono", text: [error.file + (error.line ? `:${error.line}` : ""),
              error.path, error.message].filter(Boolean).join(": ") }),
          ),
        ),
      ),
    );
  document.getElementById("refused").replaceChildren(...blocks);
  document.getElementById("refused-section").hidden = !blocks.length;
}

function drawRouters(data) {
  const rows = data.routers
    .filter((router) => matches([router.name, router.rule, router.service]))
    .filter((router) => !problemsOnly() || routerHasProblem(router))
    .map((router) => {
      const rate = state.rates[router.name];
      const share = rate ? rate.errorShare : undefined;
      const shareClass = share > 0.05 ? "rate-bad" : share > 0 ? "rate-warn" : "";
      return el(
        "tr",
        { "data-name": router.name, class: router.status },
        el("td", {}, badge(router.status)),
        el("td", {}, el("span", { class: "mono", text: router.name }), errorList(router.error)),
        el("td", {}, chips(router.using || router.entryPoints)),
        el("td", { class: "rule mono", text: router.rule }),
        el("td", {}, chips(router.middlewares)),
        el("td", { class: "mono", text: router.service }),
        el("td", { class: "num", text: rate ? formatRate(rate.rps) : "–" }),
        el("td", {
          class: `num ${shareClass}`,
          text: share === undefined ? "–" : `${(share * 100).toFixed(share > 0 && share < 0.01 ? 1 : 0)} %`,
        }),
      );
    });
  fillTable("routers", rows, 8);
}

function serverCell(service) {
  const reasons = service.serverReasons || {};
  return Object.entries(service.serverStatus || {}).map(([url, status]) =>
    el(
      "span",
      { class: "server", "data-url": url, "data-status": status },
      badge(status),
      " ",
      el("span", { class: "mono", text: url }),
      reasons[url] ? el("div", { class: "why", text: reasons[url] }) : null,
    ),
  );
}

function drawServices(data) {
  const rows = data.services
    .filter((service) =>
      matches([service.name, ...Object.keys(service.serverStatus || {})]),
    )
    .filter((service) => !problemsOnly() || serviceHasProblem(service))
    .map((service) =>
      el(
        "tr",
        { "data-name": service.name, class: service.status },
        el("td", {}, badge(service.status)),
        el("td", {}, el("span", { class: "mono", text: service.name }), errorList(service.error)),
        el("td", { text: service.type || (service.provider === "internal" ? "internal" : "") }),
        el("td", {}, serverCell(service)),
        el("td", { class: "num", text: service.inFlightRequests ?? "" }),
        el("td", { class: "num", text: rateText(state.serviceRates[service.name]) }),
        el("td", {}, chips(service.usedBy)),
      ),
    );
  fillTable("services", rows, 7);
}

function drawMiddlewares(data) {
  const rows = data.middlewares
    .filter((middleware) => matches([middleware.name, middleware.type]))
    .filter((middleware) => !problemsOnly() || middleware.status !== "enabled")
    .map((middleware) =>
      el(
        "tr",
        { "data-name": middleware.name, class: middleware.status },
        el("td", {}, badge(middleware.status)),
        el("td", {}, el("span", { class: "mono", text: middleware.name }),
          errorList(middleware.error)),
        el("td", { text: middleware.type }),
        el("td", {}, chips(middleware.usedBy)),
      ),
    );
  fillTable("middlewares", rows, 4);
}

function drawLayer4(data) {
  const routers = [
    ...data.tcpRouters.map((router) => ["TCP", router]),
    ...data.udpRouters.map((router) => ["UDP", router]),
  ].filter(([, router]) => matches([router.name, router.rule, router.service]));
  const services = [
    ...data.tcpServices.map((service) => ["TCP", service]),
    ...data.udpServices.map((service) => ["UDP", service]),
  ].filter(([, service]) => matches([service.name]));
  const any = data.tcpRouters.length + data.udpRouters.length + data.tcpServices.length +
    data.udpServices.length;
  document.getElementById("l4-section").hidden = !any;
  fillTable("l4routers", routers.map(([kind, router]) =>
    el(
      "tr",
      { "data-name": router.name, class: router.status },
      el("td", {}, badge(router.status)),
      el("td", {}, el("span", { class: "mono", text: router.name }), errorList(router.error)),
      el("td", { text: kind }),
      el("td", {}, chips(router.using || router.entryPoints)),
      el("td", { class: "rule mono", text: router.rule || "" }),
      el("td", { class: "mono", text: router.service }),
    )), 6);
  fillTable("l4services", services.map(([kind, service]) => {
    const balancer = service.loadBalancer || {};
    const addresses = (balancer.servers || []).map((server) => server.address);
    return el(
      "tr",
      { "data-name": service.name, class: service.status },
      el("td", {}, badge(service.status)),
      el("td", {}, el("span", { class: "mono", text: service.name }), errorList(service.error)),
      el("td", { text: `${kind} ${service.type || ""}` }),
      el("td", {}, chips(addresses)),
      el("td", {}, chips(service.usedBy)),
    );
  }), 5);
}

function drawEntrypoints(data) {
  const counters = data.traffic.entrypoints || {};
  fillTable("entrypoints", data.entrypoints
    .filter((entrypoint) => matches([entrypoint.name, entrypoint.address]))
    .map((entrypoint) =>
      el(
        "tr",
        { "data-name": entrypoint.name },
        el("td", { class: "mono", text: entrypoint.name }),
        el("td", { class: "mono", text: entrypoint.address }),
        el("td", { class: "num", text: counters[entrypoint.name]?.openConnections ?? "" }),
        el("td", { class: "num", text: rateText(state.entrypointRates[entrypoint.name]) }),
      ),
    ), 4);
}

function rateText(rate) {
  return rate ? formatRate(rate.rps) : "\u2013";
}

function draw() {
  const data = state.data;
  if (!data) return;
  drawCards(data);
  drawProblems(data);
  drawRefused(data);
  drawRouters(data);
  drawServices(data);
  drawMiddlewares(data);
  drawLayer4(data);
  drawEntrypoints(data);
}

// -- polling ---------------------------------------------------------------------------------

async function refresh() {
  const updated = document.getElementById("updated");
  try {
    const [
      [overview], routers, services, middlewares, entrypoints, [providers], [traffic],
      tcpRouters, tcpServices, udpRouters, udpServices,
    ] = await Promise.all([
      getJSON("overview"),
      getAll("http/routers"),
      getAll("http/services"),
      getAll("http/middlewares"),
      getAll("entrypoints"),
      getJSON("providers"),
      getJSON("traffic"),
      getAll("tcp/routers"),
      getAll("tcp/services"),
      getAll("udp/routers"),
      getAll("udp/services"),
    ]);
    updateRates(traffic);
    state.data = {
      overview, routers, services, middlewares, entrypoints, providers, traffic,
      tcpRouters, tcpServices, udpRouters, udpServices,
    };
    state.failures = 0;
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    updated.classList.remove("stale");
    draw();
  } catch (error) {
    state.failures += 1;
    updated.textContent = `cannot reach Turnout (${error.message}); showing data from ` +
      (state.data ? "the last successful refresh" : "nowhere yet");
    updated.classList.add("stale");
  } finally {
    setTimeout(refresh, POLL_MS);
  }
}

async function start() {
  try {
    const [version] = await getJSON("version");
    document.getElementById("version").textContent =
      `${version.Version}, up since ${new Date(version.startDate).toLocaleString()}`;
  } catch (error) {
    document.getElementById("version").textContent = "";
  }
  document.getElementById("search").addEventListener("input", draw);
  document.getElementById("problems-only").addEventListener("change", draw);
  refresh();
}

start();
