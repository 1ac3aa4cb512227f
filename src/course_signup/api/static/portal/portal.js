"use strict";
// Shared by every portal page: the session (a bearer token kept in sessionStorage), calls to the JSON API,
// polling, and DOM helpers. Data is only ever written with textContent or text nodes, never as HTML.

const Portal = (() => {
  const TOKEN = "course-signup.token";
  const NOTICE = "course-signup.notice";
  const root = document.body.dataset.root || "";
  let pausedUntil = 0; // after a 429 or 503 with Retry-After, polling waits that long

  class ApiError extends Error {
    constructor(status, sentence) {
      super(sentence);
      this.status = status;
    }
  }

  function claimsOf(token) {
    const parts = token.split(".");
    if (parts.length !== 3) return null;
    try {
      const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
      const bytes = Uint8Array.from(atob(base64 + "===".slice((base64.length + 3) % 4)), (c) => c.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder().decode(bytes));
      return claims && typeof claims.sub === "string" ? claims : null;
    } catch {
      return null;
    }
  }

  // Who the token says the user is. The service checks the signature on every call; this only picks the
  // paths and links to show.
  function session() {
    const token = sessionStorage.getItem(TOKEN);
    const claims = token ? claimsOf(token) : null;
    if (!claims || (typeof claims.exp === "number" && claims.exp * 1000 <= Date.now())) {
      if (token) sessionStorage.removeItem(TOKEN);
      return null;
    }
    return { token, email: claims.sub, admin: claims.role === "admin" };
  }

  function signIn(token) {
    if (!claimsOf(token)) return false;
    sessionStorage.setItem(TOKEN, token);
    return true;
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN);
  }

  function toSignIn(reason) {
    signOut();
    if (reason) sessionStorage.setItem(NOTICE, reason);
    const next = location.pathname.slice(root.length) + location.search;
    location.assign(`${root}/portal/sign-in?next=${encodeURIComponent(next)}`);
  }

  function takeNotice() {
    const notice = sessionStorage.getItem(NOTICE);
    sessionStorage.removeItem(NOTICE);
    return notice;
  }

  // A same-origin path to go to after signing in; anything else (another host, //x, /\x) means the start page.
  function nextPath() {
    const next = new URLSearchParams(location.search).get("next") || "/";
    return /^\/(?![/\\])/.test(next) ? root + next : `${root}/`;
  }

  // One call to the JSON API. Resolves to the envelope; rejects with ApiError carrying the envelope's
  // sentence. A 401 ends the session and goes back to sign in, unless `stay` is set.
  async function api(method, path, body, { stay = false } = {}) {
    const headers = { Accept: "application/json" };
    const current = session();
    if (current) headers.Authorization = `Bearer ${current.token}`;
    const init = { method, headers, credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(root + path, init);
    } catch {
      throw new ApiError(0, "The service cannot be reached; check the connection and try again.");
    }
    let envelope = null;
    try {
      envelope = await response.json();
    } catch {
      envelope = null;
    }
    if (response.ok && envelope) return envelope;
    const sentence =
      envelope && typeof envelope.data === "string" ? envelope.data : "The service could not answer; try again.";
    const retryAfter = Number(response.headers.get("Retry-After"));
    if (retryAfter > 0) pausedUntil = Math.max(pausedUntil, Date.now() + retryAfter * 1000);
    if (response.status === 401 && !stay) toSignIn(`${sentence} Please sign in again.`);
    throw new ApiError(response.status, sentence);
  }

  function studentPath(email) {
    return `/students/${encodeURIComponent(email)}/courses`;
  }

  // h("li", {class: "card"}, "text", child): an element; strings become text nodes.
  function h(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "hidden") node.hidden = true;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    node.append(...children.filter((child) => child !== null && child !== undefined));
    return node;
  }

  // Text for screen readers only, e.g. the course a "Sign up" button is for.
  function hiddenText(text) {
    return h("span", { class: "visually-hidden" }, text);
  }

  function link(path, text, ...extra) {
    return h("a", { href: root + path }, text, ...extra);
  }

  function slot(name) {
    return document.querySelector(`[data-slot="${name}"]`);
  }

  function say(node, text) {
    if (node) node.textContent = text || "";
  }

  function notice(text) {
    say(slot("notice"), text);
  }

  function seats(course) {
    if (course.capacity === null) return "Unlimited";
    if (course.seatsLeft <= 0) return "Full";
    return course.seatsLeft === 1 ? "1 seat left" : `${course.seatsLeft} seats left`;
  }

  function utc(moment) {
    return moment ? `${moment.slice(0, 16).replace("T", " ")} UTC` : "";
  }

  function param(name) {
    return new URLSearchParams(location.search).get(name) || "";
  }

  // Run `task` every `ms` while the page is visible, never two at once, and not while the service asked
  // to wait (Retry-After); at once when the page shows again.
  function every(ms, task) {
    let timer = null;
    let running = false;
    async function tick() {
      clearTimeout(timer);
      if (running) return; // the run in progress schedules the next one
      if (!document.hidden && Date.now() >= pausedUntil) {
        running = true;
        try {
          await task();
        } catch {
          // the task shows its own errors; polling carries on
        } finally {
          running = false;
        }
      }
      timer = setTimeout(tick, ms);
    }
    timer = setTimeout(tick, ms);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) tick();
    });
  }

  // Keyset pages: the API hands out the next cursor; the ones already seen are kept to go back.
  function pager(load) {
    const previous = document.querySelector('[data-page="previous"]');
    const next = document.querySelector('[data-page="next"]');
    const seen = [];
    const state = { cursor: null, nextCursor: null };
    previous.addEventListener("click", () => {
      state.cursor = seen.pop() || null;
      load();
    });
    next.addEventListener("click", () => {
      seen.push(state.cursor);
      state.cursor = state.nextCursor;
      load();
    });
    return {
      get cursor() {
        return state.cursor;
      },
      reset() {
        seen.length = 0;
        state.cursor = null;
      },
      update(page) {
        state.nextCursor = page ? page.nextCursor : null;
        next.disabled = !state.nextCursor;
        previous.disabled = seen.length === 0;
      },
    };
  }

  function showSession() {
    const current = session();
    for (const node of document.querySelectorAll("[data-when]")) {
      const when = node.dataset.when;
      node.hidden = !(
        (when === "signed-in" && current) ||
        (when === "signed-out" && !current) ||
        (when === "registrar" && current && current.admin)
      );
    }
    say(slot("who"), current ? current.email : "");
    const signOutButton = document.querySelector('[data-action="sign-out"]');
    signOutButton.addEventListener("click", () => {
      signOut();
      location.assign(`${root}/`);
    });
  }

  showSession();

  return {
    ApiError,
    api,
    claimsOf,
    every,
    h,
    hiddenText,
    link,
    nextPath,
    notice,
    pager,
    param,
    root,
    say,
    seats,
    session,
    signIn,
    signOut,
    slot,
    studentPath,
    takeNotice,
    toSignIn,
    utc,
  };
})();
