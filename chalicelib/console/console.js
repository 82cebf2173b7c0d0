// Trickle's operator console: plain DOM, no framework, no build step.
// Every figure comes from the operator routes and is inserted as text (never as markup), and the
// token of a token stage lives in sessionStorage only and travels only in the Authorization header.
"use strict";

(() => {
  const AUTH = meta("auth"); // "token", "iam" or "proxy" (operate console's local signing proxy)
  const SESSION = meta("session"); // the proxy's per-run value, which it wants on every call
  const TOKEN_KEY = "trickle-operator-token";
  const BASE = location.pathname.replace(/\/console\/?$/, ""); // "/api" behind API Gateway
  const OVERVIEW_POLL_MS = 10000;
  const PROGRESS_POLL_MS = 2000;
  const main = document.getElementById("main");
  let timers = []; // the current page's polls, stopped when another page is drawn
  let view = 0; // which drawing is current: a late answer for an earlier page draws nothing
  let known = []; // destination names, as the last /status gave them

  function meta(name) {
    const tag = document.querySelector(`meta[name="trickle-${name}"]`);
    return tag ? tag.content : "";
  }

  // An element; strings among the children become text nodes, so data is never parsed as markup.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function link(hash, text, props) {
    return el("a", { href: "#/" + hash.map(encodeURIComponent).join("/"), ...props }, text);
  }

  // The page's content; null, undefined and false among the nodes are left out, as el() does.
  function show(...nodes) {
    const shown = nodes.filter((node) => node !== null && node !== undefined && node !== false);
    main.replaceChildren(...shown);
  }

  function every(ms, fn) {
    timers.push(setInterval(fn, ms));
  }

  // --- calls ---------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (AUTH === "token") headers.Authorization = "Bearer " + token();
    if (AUTH === "proxy") headers["X-Trickle-Session"] = SESSION;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
      redirect: "error",
    });
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      if (AUTH === "token" && (response.status === 401 || response.status === 403)) {
        sessionStorage.removeItem(TOKEN_KEY);
        drawToken(`The API refused the token (HTTP ${response.status}): paste it again.`);
        throw new ApiError(response.status, "token refused");
      }
      const said = data && typeof data === "object" ? data.Message || data.message : null;
      throw new ApiError(response.status, `HTTP ${response.status}: ${said || "no message"}`);
    }
    return data;
  }

  function failure(error) {
    return el("p", { class: "error", role: "alert" }, String(error.message || error));
  }

  // --- formatting ----------------------------------------------------------------------------

  function count(value) {
    return typeof value === "number" ? value.toLocaleString("en") : "—";
  }

  function duration(seconds) {
    if (typeof seconds !== "number") return "—";
    if (seconds < 120) return `${Math.round(seconds)} s`;
    if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
    if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
    return `${(seconds / 86400).toFixed(1)} d`;
  }

  // Epoch seconds (the ledger's and the drain's) or an ISO string (dead_at) -> "date time (age ago)".
  function moment(value) {
    if (value === null || value === undefined || value === "") return "—";
    const when = typeof value === "number" ? new Date(value * 1000) : new Date(String(value));
    if (Number.isNaN(when.getTime())) return String(value);
    const age = (Date.now() - when.getTime()) / 1000;
    const shown = when.toISOString().slice(0, 19).replace("T", " ") + "Z";
    return age >= 0 ? `${shown} (${duration(age)} ago)` : `${shown} (in ${duration(-age)})`;
  }

  // The overview's short form: "12 s ago" or "in 40 s", the full time as the element's title.
  function relative(value) {
    const full = moment(value);
    const short = full.match(/\((.*)\)$/);
    return el("span", { title: full }, short ? short[1] : full);
  }

  function plural(n, one, many) {
    return `${count(n)} ${n === 1 ? one : many}`;
  }

  function table(id, headings, rows) {
    return el(
      "table",
      { id },
      el("thead", {}, el("tr", {}, headings.map((h) => el("th", { scope: "col" }, Array.isArray(h) ? h.map((x) => (x instanceof Node ? x.cloneNode(true) : x)) : h)))),
      el("tbody", {}, rows),
    );
  }

  // --- authorization -------------------------------------------------------------------------

  function drawWho() {
    const who = document.getElementById("who");
    if (AUTH === "token" && token()) {
      who.replaceChildren(
        el("button", { type: "button", id: "forget", onclick: () => forget() }, "Forget token"),
      );
    } else if (AUTH === "proxy") {
      who.replaceChildren("Signed by the local proxy (IAM)");
    } else {
      who.replaceChildren();
    }
  }

  function forget() {
    sessionStorage.removeItem(TOKEN_KEY);
    draw();
  }

  function drawToken(message) {
    stop();
    drawWho();
    const input = el("input", {
      id: "token",
      type: "password",
      autocomplete: "off",
      spellcheck: "false",
      required: true,
      "aria-label": "Operator token",
    });
    const form = el(
      "form",
      {
        id: "token-form",
        onsubmit: (event) => {
          event.preventDefault();
          const value = input.value.trim();
          if (!value) return;
          sessionStorage.setItem(TOKEN_KEY, value);
          input.value = "";
          draw();
        },
      },
      el("label", { for: "token" }, "Operator token"),
      input,
      el("button", { type: "submit" }, "Use token"),
    );
    show(
      el("h1", {}, "Operator token"),
      message ? el("p", { class: "error", role: "alert" }, message) : null,
      el(
        "p",
        {},
        "This stage authorizes its routes with a bearer token (TRICKLE_AUTH=token). It is kept in this",
        " tab's session storage only and sent as the Authorization header; closing the tab forgets it.",
      ),
      form,
    );
    input.focus();
  }

  function drawIam() {
    show(
      el("h1", {}, "This stage uses IAM authorization"),
      el(
        "p",
        {},
        "Its routes want SigV4 signatures, which a browser cannot make. Run the console through the",
        " local signing proxy, with your AWS credentials, and open the address it prints:",
      ),
      el("pre", {}, "python -m trickle_deploy.operate --stage STAGE console"),
    );
  }

  // --- confirmation -------------------------------------------------------------------------

  // An in-page question with a confirm and a cancel button (and, if asked, a reason to give);
  // `yes(reason)` runs only on the confirm button.
  // Previous and Next of a cursor-paged list: `state.cursors[page]` is the cursor of each page seen.
  function pageButtons(state, previous, next, load) {
    previous.addEventListener("click", () => {
      state.page -= 1;
      load();
    });
    next.addEventListener("click", () => {
      state.page += 1;
      load();
    });
  }

  function confirmation(box, question, label, yes, withReason) {
    const reason = withReason
      ? el("input", { id: "confirm-reason", type: "text", maxlength: 500, placeholder: "reason (optional)" })
      : null;
    box.replaceChildren(
      el("p", {}, question),
      reason,
      el(
        "button",
        {
          type: "button",
          id: "confirm-yes",
          onclick: () => {
            box.hidden = true;
            yes(reason ? reason.value.trim() : "");
          },
        },
        label,
      ),
      el("button", { type: "button", id: "confirm-no", onclick: () => (box.hidden = true) }, "Cancel"),
    );
    box.hidden = false;
    (reason || document.getElementById("confirm-no")).focus();
  }

  // --- overview ------------------------------------------------------------------------------

  function lastRun(run) {
    if (!run) return "no run yet";
    const parts = [`${count(run.delivered)} delivered of ${count(run.received)} received`];
    if (run.retried) parts.push(`${count(run.retried)} retried`);
    if (run.dead_lettered) parts.push(`${count(run.dead_lettered)} dead-lettered`);
    if (run.redriven) parts.push(`${count(run.redriven)} redriven`);
    if (run.halted) parts.push(`${count(run.halted)} halted`);
    parts.push(`stopped by ${run.stopped_by || "—"}` + (run.stop_reason ? `: ${run.stop_reason}` : ""));
    return [el("div", {}, relative(run.finished_at)), el("div", { class: "small" }, parts.join(" · "))];
  }

  function oldest(queue) {
    const age = queue.oldest_message_age_s;
    if (typeof age !== "number") return "—";
    // an incomplete look (the run stopped before the queue was empty) may have missed older ones
    return queue.oldest_complete ? duration(age) : `≥ ${duration(age)}`;
  }

  // "last hour / last day", and since start below: one of the totals' three figures.
  function total(totals, figure) {
    if (!totals) return "—";
    const pick = (span) => (totals[span] ? totals[span][figure] : undefined);
    return [
      el("div", {}, `${count(pick("last_hour"))} / ${count(pick("last_day"))}`),
      el("div", { class: "small" }, `${count(pick("since_start"))} since start`),
    ];
  }

  function health(name, d) {
    const lines = [];
    if (d.paused) {
      const p = d.paused;
      lines.push(el("div", { class: "warn", "data-figure": "paused" }, "paused"));
      lines.push(el("div", { class: "small" }, `by ${p.by || "—"}, `, relative(p.at)));
      if (p.reason) lines.push(el("div", { class: "small" }, p.reason));
    }
    if (d.circuit) {
      const open = d.circuit.state !== "closed";
      lines.push(
        el(
          "div",
          { class: open ? "warn" : "", "data-figure": "circuit" },
          `circuit ${d.circuit.state}`,
          open && d.circuit.since ? [" since ", relative(d.circuit.since)] : null,
        ),
      );
    }
    if (typeof d.halted_groups === "number") {
      const halted = plural(d.halted_groups, "halted group", "halted groups");
      lines.push(
        el(
          "div",
          { class: d.halted_groups ? "warn" : "small", "data-figure": "halted_groups" },
          d.halted_groups ? link(["halted", name], halted) : halted,
        ),
      );
    }
    return lines.length ? lines : "—";
  }

  function nextRun(d) {
    if (d.next_run === undefined && d.schedule === undefined) return "—";
    return [el("div", {}, d.next_run ? relative(d.next_run) : "—"), el("div", { class: "small" }, d.schedule || "")];
  }

  function destinationRow(name, d, extended, act) {
    const queue = d.queue || {};
    const dead = d.dead_letters || {};
    const deadCount = (dead.queued || 0) + (dead.in_flight || 0);
    const cells = [
      el("th", { scope: "row" }, link(["dead-letters", name], name, { class: "destination" })),
      el("td", { class: "num", "data-figure": "queued" }, count(queue.queued)),
      el("td", { class: "num", "data-figure": "in_flight" }, count(queue.in_flight)),
      el("td", { class: "num", "data-figure": "oldest" }, oldest(queue)),
      el(
        "td",
        { class: deadCount ? "num warn" : "num", "data-figure": "dead_letters" },
        link(["dead-letters", name], count(deadCount)),
      ),
    ];
    if (extended) {
      cells.push(
        el("td", { class: "num", "data-figure": "delivered" }, total(d.totals, "delivered")),
        el("td", { class: "num", "data-figure": "failed_attempts" }, total(d.totals, "failed_attempts")),
        el("td", { class: "num", "data-figure": "dead_lettered" }, total(d.totals, "dead_lettered")),
        el("td", { "data-figure": "health" }, health(name, d)),
        el("td", { "data-figure": "next_run" }, nextRun(d)),
      );
    }
    cells.push(el("td", { "data-figure": "last_run" }, lastRun(d.last_run)));
    if (extended) {
      const paused = Boolean(d.paused);
      cells.push(
        el(
          "td",
          {},
          el("button", { type: "button", class: paused ? "resume" : "pause", onclick: () => act(name, paused) }, paused ? "Resume…" : "Pause…"),
        ),
      );
    }
    return el("tr", { "data-destination": name }, cells);
  }

  function unrouted(u) {
    if (!u) return null;
    const since = u.since ? ` since ${moment(u.since)}` : "";
    return el(
      "p",
      { id: "unrouted", class: "small" },
      `Stream records no route took: ${count(u.count)}${since} (handling: ${u.handling}).`,
    );
  }

  // Counters as the jobs keep them, nested per destination: "scanned 1,200 · orders: queued 1,100".
  function counters(counts, prefix) {
    return Object.entries(counts || {}).flatMap(([name, value]) =>
      value && typeof value === "object" ? counters(value, `${prefix}${name}: `) : [`${prefix}${name} ${count(value)}`],
    );
  }

  function jobs(list) {
    if (!Array.isArray(list)) return null;
    if (!list.length) return el("p", { id: "jobs", class: "small" }, "No backfill or replay job running.");
    return el(
      "div",
      {},
      el("h2", {}, "Backfill and replay jobs"),
      table(
        "jobs",
        ["Job", "Kind", "Destinations", "Parts done", "Counts", "Started"],
        list.map((job) =>
          el(
            "tr",
            { "data-job": job.id },
            el("td", { class: "id" }, job.id),
            el("td", {}, job.kind),
            el("td", {}, (job.destinations || []).join(", ")),
            el("td", { class: "num" }, `${count(job.parts_done)} of ${count(job.parts)}`),
            el("td", {}, el("div", {}, counters(job.counts, "").join(" · ") || "—")),
            el("td", { class: "when" }, relative(job.created_at)),
          ),
        ),
      ),
    );
  }

  const BASIC = ["Destination", "Queued", "In flight", "Oldest message", "Dead letters"];
  const SPANS = el("div", { class: "small" }, "1 h / 24 h");
  const EXTENDED = [["Delivered", SPANS], ["Failed attempts", SPANS], ["Dead-lettered", SPANS], "Health", "Next run"];

  async function drawOverview(current) {
    const updated = el("p", { id: "updated", class: "small" }, "Loading…");
    const confirmBox = el("div", { id: "confirm", hidden: true, role: "dialog", "aria-modal": "false" });
    const said = el("div", { id: "said", "aria-live": "polite" });
    const holder = el("div", {}, el("p", {}, "Loading…"));
    show(el("h1", {}, "Destinations"), updated, confirmBox, said, holder);

    const act = (name, paused) => {
      const path = `/destinations/${encodeURIComponent(name)}/${paused ? "resume" : "pause"}`;
      const question = paused
        ? `Resume ${name}? Its next drain run receives and delivers again, each group in order.`
        : `Pause ${name}? From its next drain run it receives nothing: its messages wait in its queue.`;
      confirmation(
        confirmBox,
        question,
        paused ? "Resume" : "Pause",
        async (reason) => {
          try {
            await api("POST", path, paused || !reason ? {} : { reason });
            if (current !== view) return;
            said.replaceChildren(el("p", {}, `${name} ${paused ? "resumed" : "paused"}.`));
            load();
          } catch (error) {
            if (current === view) said.replaceChildren(failure(error));
          }
        },
        !paused,
      );
    };

    const load = async () => {
      try {
        const status = await api("GET", "/status");
        if (current !== view) return;
        const names = Object.keys(status.destinations || {});
        known = names;
        // the figures of issue #27's health routes, when the API has them
        const extended = names.some((name) => "totals" in status.destinations[name]);
        const headings = [...BASIC, ...(extended ? EXTENDED : []), "Last run", ...(extended ? [""] : [])];
        holder.replaceChildren(
          table("overview", headings, names.map((name) => destinationRow(name, status.destinations[name], extended, act))),
          unrouted(status.unrouted),
          jobs(status.jobs),
        );
        updated.replaceChildren(
          `Updated ${new Date().toLocaleTimeString("en-GB")}; refreshed every ${OVERVIEW_POLL_MS / 1000} s from /status, which never touches the queues' messages.`,
        );
      } catch (error) {
        if (current === view && !(error instanceof ApiError && error.message === "token refused")) {
          updated.replaceChildren(failure(error));
        }
      }
    };
    await load();
    if (current === view) {
      every(OVERVIEW_POLL_MS, () => {
        if (!document.hidden) load();
      });
    }
  }

  // --- dead letters --------------------------------------------------------------------------

  async function pickDestination(current, hash, title) {
    show(el("h1", {}, title), el("p", {}, "Loading…"));
    try {
      if (!known.length) known = Object.keys((await api("GET", "/status")).destinations || {});
      if (current !== view) return;
      show(
        el("h1", {}, title),
        el("p", {}, "Pick a destination:"),
        el("ul", { id: "destinations" }, known.map((name) => el("li", {}, link([hash, name], name)))),
      );
    } catch (error) {
      if (current === view) show(el("h1", {}, title), failure(error));
    }
  }

  function drawDeadLetters(current, destination) {
    const state = { cursors: [null], page: 0, limit: 10, rows: [], selected: new Set() };
    const q = (name) => encodeURIComponent(name);
    const filter = el("input", {
      id: "filter",
      type: "search",
      placeholder: "reason, group, id or status",
      "aria-label": "Filter this page",
    });
    const limit = el(
      "select",
      { id: "limit", "aria-label": "Page size" },
      [10, 25, 50].map((n) => el("option", { value: n }, `${n} a page`)),
    );
    const pageInfo = el("span", { id: "page-info", class: "small" });
    const previous = el("button", { type: "button", id: "previous", disabled: true }, "Previous page");
    const next = el("button", { type: "button", id: "next", disabled: true }, "Next page");
    const redriveSome = el("button", { type: "button", id: "redrive-selected", disabled: true }, "Redrive selected");
    const redriveAll = el("button", { type: "button", id: "redrive-all" }, "Redrive all…");
    const holder = el("div", { id: "dead-letter-page" }, el("p", {}, "Loading…"));
    const confirmBox = el("div", { id: "confirm", hidden: true, role: "dialog", "aria-modal": "false" });
    const progress = el("div", { id: "progress", hidden: true, "aria-live": "polite" });

    const matches = (row, text) =>
      !text ||
      [row.message_id, row.group_id, row.reason, String(row.last_status_code ?? "")].some((v) =>
        String(v ?? "").toLowerCase().includes(text),
      );

    const render = () => {
      const text = filter.value.trim().toLowerCase();
      const shown = state.rows.filter((row) => matches(row, text));
      redriveSome.replaceChildren(`Redrive selected (${state.selected.size})…`);
      redriveSome.disabled = state.selected.size === 0;
      previous.disabled = state.page === 0;
      next.disabled = state.cursors[state.page + 1] === undefined || state.cursors[state.page + 1] === null;
      pageInfo.replaceChildren(
        `Page ${state.page + 1}: ${state.rows.length} dead letters` +
          (text ? `, ${shown.length} match the filter` : ""),
      );
      if (!state.rows.length) {
        holder.replaceChildren(el("p", { id: "no-dead-letters" }, "No dead letters on this page."));
        return;
      }
      holder.replaceChildren(
        table(
          "dead-letters",
          ["", "Message", "Group", "Reason", "Attempts", "Last status", "Dead at", "Redrivable"],
          shown.map((row) =>
            el(
              "tr",
              { "data-message-id": row.message_id },
              el(
                "td",
                {},
                el("input", {
                  type: "checkbox",
                  "aria-label": "select",
                  checked: state.selected.has(row.message_id),
                  disabled: !row.redrivable,
                  onchange: (event) => {
                    if (event.target.checked) state.selected.add(row.message_id);
                    else state.selected.delete(row.message_id);
                    render();
                  },
                }),
              ),
              el("td", { class: "id" }, link(["messages", row.message_id], row.message_id)),
              el("td", { class: "group" }, el("div", {}, row.group_id)),
              el("td", { class: "reason" }, el("div", {}, row.reason)),
              el("td", { class: "num" }, count(row.attempts)),
              el("td", { class: "num" }, row.last_status_code ?? "—"),
              el("td", { class: "when" }, moment(row.dead_at)),
              el("td", {}, row.redrivable ? "yes" : "no (rejected at ingest)"),
            ),
          ),
        ),
      );
    };

    const load = async () => {
      const cursor = state.cursors[state.page];
      const path =
        `/dead-letters?destination=${q(destination)}&limit=${state.limit}` + (cursor ? `&next=${q(cursor)}` : "");
      holder.setAttribute("aria-busy", "true");
      try {
        const answer = await api("GET", path);
        if (current !== view) return;
        state.rows = answer.dead_letters || [];
        state.cursors[state.page + 1] = answer.next;
        render();
      } catch (error) {
        if (current === view) holder.replaceChildren(failure(error));
      } finally {
        holder.removeAttribute("aria-busy");
      }
    };

    const ask = (question, what, body) => confirmation(confirmBox, question, "Redrive", () => start(what, body), false);

    const start = async (what, body) => {
      progress.hidden = false;
      progress.replaceChildren(el("p", {}, `Opening a redrive of ${what}…`));
      try {
        const job = await api("POST", `/dead-letters/redrive?destination=${q(destination)}`, body);
        const url = String(job.progress_url || "");
        if (!url.startsWith("/") || url.startsWith("//")) throw new Error("the API gave no progress_url");
        follow(job, url, body.message_ids || []);
      } catch (error) {
        if (current === view) progress.replaceChildren(failure(error));
      }
    };

    const follow = (job, url, ids) => {
      const delivered = el("div", { id: "redriven" });
      const figures = el("p", { id: "job" });
      progress.replaceChildren(figures, delivered);
      let done = false;
      const drawJob = (j) => {
        figures.replaceChildren(
          `Redrive ${j.state}: ${count(j.moved)} moved back` +
            ` (${j.steps ? plural(j.steps, "drain run", "drain runs") : "waits for the destination's next drain run"})` +
            (j.failed ? `, ${count(j.failed)} failed` : "") +
            (j.skipped_not_redrivable ? `, ${count(j.skipped_not_redrivable)} not redrivable` : "") +
            (j.last_error ? `; last error: ${j.last_error}` : ""),
        );
      };
      drawJob(job);
      const checkIds = async () => {
        const rows = [];
        for (const id of ids) {
          try {
            const record = await api("GET", `/messages/${q(id)}`);
            rows.push([id, record.status]);
          } catch (error) {
            rows.push([id, error.status === 404 ? "queued (no attempt yet)" : String(error.message)]);
          }
        }
        if (current !== view) return true;
        delivered.replaceChildren(
          table(
            "redriven-messages",
            ["Message", "Status"],
            rows.map(([id, status]) =>
              el("tr", { "data-message-id": id }, el("td", {}, link(["messages", id], id)), el("td", { class: "status" }, status)),
            ),
          ),
        );
        return rows.every(([, status]) => status === "delivered" || status === "dead");
      };
      const poll = async () => {
        if (current !== view) return;
        try {
          if (!done) {
            const j = await api("GET", url);
            if (current !== view) return;
            drawJob(j);
            if (j.state === "done") {
              done = true;
              state.selected.clear();
              load();
            }
          }
          if (done && (!ids.length || (await checkIds()))) {
            stopOne(handle);
            if (!ids.length) delivered.replaceChildren(el("p", {}, "Done. The overview shows them delivered."));
          }
        } catch (error) {
          if (current === view) delivered.replaceChildren(failure(error));
        }
      };
      const handle = setInterval(poll, PROGRESS_POLL_MS);
      timers.push(handle);
      poll();
    };

    filter.addEventListener("input", render);
    limit.addEventListener("change", () => {
      state.limit = Number(limit.value);
      state.cursors = [null];
      state.page = 0;
      load();
    });
    pageButtons(state, previous, next, load);
    redriveSome.addEventListener("click", () => {
      const ids = [...state.selected].sort();
      ask(`Redrive ${ids.length} dead letters of ${destination}?`, `${ids.length} dead letters`, {
        message_ids: ids,
      });
    });
    redriveAll.addEventListener("click", () =>
      ask(`Redrive every dead letter of ${destination}? The drain moves them back from its next run.`, "every dead letter", {}),
    );

    show(
      el("h1", {}, "Dead letters of ", el("span", { id: "destination" }, destination)),
      el("p", { class: "small" }, "In the order they died, from the ledger (listing never touches the dead-letter queue)."),
      el("div", { class: "controls" }, filter, limit, redriveSome, redriveAll),
      confirmBox,
      progress,
      holder,
      el("div", { class: "controls" }, previous, pageInfo, next),
    );
    load();
  }

  // --- halted groups ---------------------------------------------------------------------------

  function drawHalted(current, destination) {
    const state = { cursors: [null], page: 0, rows: [] };
    const q = encodeURIComponent;
    const holder = el("div", { id: "halted-page" }, el("p", {}, "Loading…"));
    const confirmBox = el("div", { id: "confirm", hidden: true, role: "dialog", "aria-modal": "false" });
    const said = el("div", { id: "said", "aria-live": "polite" });
    const previous = el("button", { type: "button", id: "previous", disabled: true }, "Previous page");
    const next = el("button", { type: "button", id: "next", disabled: true }, "Next page");

    const release = (row, choice) => {
      const url = String(row[`${choice}_url`] || "");
      const question =
        choice === "retry"
          ? `Retry ${row.message_id}, the head of group ${row.group_id}? Its attempts start over and its drain tries it again at its next run.`
          : `Skip ${row.message_id}? It is dead-lettered with its reason at its drain's next run, and group ${row.group_id} goes on.`;
      confirmation(confirmBox, question, choice === "retry" ? "Retry" : "Skip", async () => {
        try {
          if (!url.startsWith("/halted/")) throw new Error(`the API gave no ${choice}_url`);
          const answer = await api("POST", url, {});
          if (current !== view) return;
          said.replaceChildren(el("p", { id: "released" }, `${answer.message_id}: ${answer.status}.`));
          load();
        } catch (error) {
          if (current === view) said.replaceChildren(failure(error));
        }
      });
    };

    const render = () => {
      previous.disabled = state.page === 0;
      next.disabled = !state.cursors[state.page + 1];
      if (!state.rows.length) {
        holder.replaceChildren(el("p", { id: "no-halted" }, "No halted groups on this page."));
        return;
      }
      holder.replaceChildren(
        table(
          "halted",
          ["Group", "Head message", "Reason", "Attempts", "Last status", "Halted since", "Last attempt", ""],
          state.rows.map((row) =>
            el(
              "tr",
              { "data-message-id": row.message_id },
              el("td", { class: "group" }, el("div", {}, row.group_id)),
              el("td", { class: "id" }, link(["messages", row.message_id], row.message_id)),
              el("td", { class: "reason" }, el("div", {}, row.reason)),
              el("td", { class: "num" }, count(row.attempts)),
              el("td", { class: "num" }, row.last_status_code ?? "—"),
              el("td", { class: "when" }, moment(row.since)),
              el("td", { class: "when" }, moment(row.last_attempt_at)),
              el(
                "td",
                {},
                el("button", { type: "button", class: "retry", onclick: () => release(row, "retry") }, "Retry…"),
                " ",
                el("button", { type: "button", class: "skip", onclick: () => release(row, "skip") }, "Skip…"),
              ),
            ),
          ),
        ),
      );
    };

    const load = async () => {
      const cursor = state.cursors[state.page];
      try {
        const answer = await api(
          "GET",
          `/halted?destination=${q(destination)}&limit=25` + (cursor ? `&next=${q(cursor)}` : ""),
        );
        if (current !== view) return;
        state.rows = answer.halted || [];
        state.cursors[state.page + 1] = answer.next;
        render();
      } catch (error) {
        if (current === view) holder.replaceChildren(failure(error));
      }
    };

    pageButtons(state, previous, next, load);
    show(
      el("h1", {}, "Halted groups of ", el("span", { id: "destination" }, destination)),
      el(
        "p",
        { class: "small" },
        "Strict ordering: each group waits behind its head message until it is retried or skipped (from the ledger; the queue is not touched).",
      ),
      confirmBox,
      said,
      holder,
      el("div", { class: "controls" }, previous, next),
    );
    load();
  }

  // --- messages ------------------------------------------------------------------------------

  const FIELDS = [
    ["destination", "Destination"],
    ["status", "Status"],
    ["attempts", "Attempts"],
    ["group_id", "Group"],
    ["item", "Item"],
    ["last_status_code", "Last status code"],
    ["last_error", "Last error"],
    ["first_attempt_at", "First attempt"],
    ["last_attempt_at", "Last attempt"],
    ["updated_at", "Updated"],
    ["dead_at", "Dead at"],
    ["callback", "Step Functions answer"],
  ];
  const STATUSES = ["queued", "delivered", "failed", "dead", "halted", "skip", "superseded"];

  function itemText(item) {
    if (!item || typeof item !== "object") return "—";
    return item.sort_key === null || item.sort_key === undefined ? `${item.key}` : `${item.key} / ${item.sort_key}`;
  }

  function lookupForm(value) {
    const input = el("input", {
      id: "message-id",
      type: "search",
      placeholder: "message id (a UUID)",
      "aria-label": "Message id",
      value: value || "",
    });
    return el(
      "form",
      {
        id: "lookup",
        onsubmit: (event) => {
          event.preventDefault();
          const id = input.value.trim();
          if (id) location.hash = "#/messages/" + encodeURIComponent(id);
        },
      },
      input,
      el("button", { type: "submit" }, "Look up"),
    );
  }

  function archived(url) {
    try {
      const parsed = new URL(String(url));
      if (parsed.protocol === "https:" || parsed.protocol === "http:") {
        return el("a", { href: parsed.href, rel: "noreferrer noopener", target: "_blank" }, "the API's answer");
      }
    } catch {
      // not a URL: shown as text below
    }
    return String(url);
  }

  function timeline(attempts) {
    if (!Array.isArray(attempts)) return "";
    return el(
      "div",
      { id: "attempts" },
      el("h3", {}, "Attempts"),
      attempts.length
        ? table(
            "timeline",
            ["At", "Status code", "Duration", "Reason"],
            attempts.map((a) =>
              el(
                "tr",
                {},
                el("td", { class: "when" }, moment(a.at)),
                el("td", { class: "num" }, a.status_code ?? "no answer"),
                el("td", { class: "num" }, typeof a.duration_ms === "number" ? `${count(a.duration_ms)} ms` : "—"),
                el("td", { class: "reason" }, el("div", {}, a.reason)),
              ),
            ),
          )
        : el("p", { class: "small" }, "No attempt yet."),
    );
  }

  async function drawMessage(current, id) {
    const holder = el("div", {}, el("p", {}, "Loading…"));
    show(el("h1", {}, "Message"), lookupForm(id), holder);
    try {
      const record = await api("GET", `/messages/${encodeURIComponent(id)}`);
      if (current !== view) return;
      const rows = FIELDS.filter(([key]) => key in record || !["destination", "item"].includes(key)).map(([key, label]) => {
        let value = record[key];
        if (key.endsWith("_at")) value = moment(value);
        if (key === "item") value = itemText(value);
        return [el("dt", {}, label), el("dd", { "data-field": key }, value ?? "—")];
      });
      if (record.response_url) {
        rows.push([el("dt", {}, "Archived response"), el("dd", { "data-field": "response_url" }, archived(record.response_url))]);
      }
      holder.replaceChildren(
        el("h2", { id: "message" }, record.message_id),
        el("dl", { id: "record" }, rows),
        timeline(record.timeline),
      );
    } catch (error) {
      if (current === view) holder.replaceChildren(failure(error));
    }
  }

  // The search forms: the messages of one item, or of a destination's status in a time window.
  async function drawMessages(current) {
    const results = el("div", { id: "results", "aria-live": "polite" });
    const state = { query: "", cursors: [null], page: 0 };
    const previous = el("button", { type: "button", id: "previous", disabled: true }, "Previous page");
    const next = el("button", { type: "button", id: "next", disabled: true }, "Next page");
    const pager = el("div", { class: "controls", hidden: true }, previous, next);
    const destinations = (id, anyone) =>
      el(
        "select",
        { id, "aria-label": "Destination" },
        anyone ? el("option", { value: "" }, "every destination") : null,
        known.map((name) => el("option", { value: name }, name)),
      );
    const body = el("div", {}, el("p", {}, "Loading…"));
    show(el("h1", {}, "Messages"), lookupForm(""), body);
    try {
      if (!known.length) known = Object.keys((await api("GET", "/status")).destinations || {});
    } catch (error) {
      if (current === view) body.replaceChildren(failure(error));
      return;
    }
    if (current !== view) return;

    const load = async () => {
      const cursor = state.cursors[state.page];
      try {
        const answer = await api("GET", `/messages?${state.query}` + (cursor ? `&next=${encodeURIComponent(cursor)}` : ""));
        if (current !== view) return;
        state.cursors[state.page + 1] = answer.next;
        previous.disabled = state.page === 0;
        next.disabled = !answer.next;
        pager.hidden = false;
        const messages = answer.messages || [];
        results.replaceChildren(
          messages.length
            ? table(
                "messages",
                ["Message", "Destination", "Status", "Attempts", "Item", "Last status", "Updated"],
                messages.map((m) =>
                  el(
                    "tr",
                    { "data-message-id": m.message_id },
                    el("td", { class: "id" }, link(["messages", m.message_id], m.message_id)),
                    el("td", {}, m.destination || "—"),
                    el("td", { class: "status" }, m.status),
                    el("td", { class: "num" }, count(m.attempts)),
                    el("td", { class: "group" }, el("div", {}, itemText(m.item))),
                    el("td", { class: "num" }, m.last_status_code ?? "—"),
                    el("td", { class: "when" }, moment(m.updated_at)),
                  ),
                ),
              )
            : el("p", { id: "no-messages" }, "No message on this page."),
        );
      } catch (error) {
        if (current === view) results.replaceChildren(failure(error));
      }
    };
    const search = (params) => {
      state.query = new URLSearchParams(Object.entries(params).filter(([, v]) => v)).toString();
      state.cursors = [null];
      state.page = 0;
      load();
    };
    pageButtons(state, previous, next, load);

    const itemDestination = destinations("item-destination", true);
    const key = el("input", { id: "item-key", type: "search", placeholder: "partition key value", "aria-label": "Partition key" });
    const sortKey = el("input", { id: "item-sort-key", type: "search", placeholder: "sort key value (optional)", "aria-label": "Sort key" });
    const byItem = el(
      "form",
      {
        id: "by-item",
        class: "controls",
        onsubmit: (event) => {
          event.preventDefault();
          search({ key: key.value, sort_key: sortKey.value, destination: itemDestination.value });
        },
      },
      el("strong", {}, "By item"),
      itemDestination,
      key,
      sortKey,
      el("button", { type: "submit" }, "Find"),
    );
    const statusDestination = destinations("status-destination", false);
    const status = el("select", { id: "status", "aria-label": "Status" }, STATUSES.map((v) => el("option", { value: v }, v)));
    const since = el("input", { id: "since", type: "text", placeholder: "since: 2026-12-04T10:00:00Z", "aria-label": "Since" });
    const until = el("input", { id: "until", type: "text", placeholder: "until (optional)", "aria-label": "Until" });
    const byStatus = el(
      "form",
      {
        id: "by-status",
        class: "controls",
        onsubmit: (event) => {
          event.preventDefault();
          search({ destination: statusDestination.value, status: status.value, since: since.value.trim(), until: until.value.trim() });
        },
      },
      el("strong", {}, "By status"),
      statusDestination,
      status,
      since,
      until,
      el("button", { type: "submit" }, "Find"),
    );
    body.replaceChildren(
      byItem,
      byStatus,
      el("p", { class: "small" }, "Times as ISO 8601 with their zone, or epoch seconds. From the ledger's indexes: a page at a time, the queues untouched."),
      results,
      pager,
    );
  }

  // --- routing -------------------------------------------------------------------------------

  function stop() {
    timers.forEach(clearInterval);
    timers = [];
    view += 1;
  }

  function stopOne(handle) {
    clearInterval(handle);
    timers = timers.filter((t) => t !== handle);
  }

  function draw() {
    stop();
    const current = view;
    drawWho();
    if (AUTH === "iam") return drawIam();
    if (AUTH === "token" && !token()) return drawToken("");
    let parts;
    try {
      parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
    } catch {
      parts = [];
    }
    const [page, arg] = parts;
    for (const a of document.querySelectorAll("nav a")) {
      a.classList.toggle("current", a.dataset.nav === (page || "overview"));
    }
    if (page === "dead-letters" && arg) return drawDeadLetters(current, arg);
    if (page === "dead-letters") return pickDestination(current, "dead-letters", "Dead letters");
    if (page === "halted" && arg) return drawHalted(current, arg);
    if (page === "halted") return pickDestination(current, "halted", "Halted groups");
    if (page === "messages" && arg) return drawMessage(current, arg);
    if (page === "messages") return drawMessages(current);
    return drawOverview(current);
  }

  window.addEventListener("hashchange", draw);
  draw();
})();
