"use strict";
// The catalogue: search, the open-seats filter, pages, sign-up and the waitlist; seat figures refresh every second.

(() => {
  const { api, h, hiddenText, link, say, seats, session, studentPath, utc } = Portal;
  const REFRESH_MS = 1000; // another process's change shows within its 1 s cache lag plus this
  const PAGE_SIZE = 20;
  const form = document.getElementById("search");
  const search = document.getElementById("q");
  const available = document.getElementById("available");
  const list = document.getElementById("courses");
  const status = document.getElementById("status");
  const cards = new Map(); // courseId -> card
  const pages = Portal.pager(() => refresh(true));
  let latest = 0;
  let announce = false; // the next answer says how many courses it holds

  function address() {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    const text = search.value.trim();
    if (text) query.set("q", text);
    if (available.checked) query.set("available", "true");
    if (pages.cursor) query.set("cursor", pages.cursor);
    return `/courses?${query}`;
  }

  function windowText(course) {
    const now = Date.now();
    if (course.registrationOpensAt && Date.parse(course.registrationOpensAt) > now) {
      return `Registration opens ${utc(course.registrationOpensAt)}`;
    }
    if (course.registrationClosesAt && Date.parse(course.registrationClosesAt) <= now) return "Registration closed";
    return course.registrationClosesAt ? `Registration closes ${utc(course.registrationClosesAt)}` : "";
  }

  function makeCard(course) {
    const id = course.courseId;
    const card = {
      name: h("span", { class: "name" }),
      lessons: h("span"),
      seats: h("span", { class: "seats" }),
      waiting: h("span", { class: "waiting" }),
      window: h("span", { class: "window" }),
      message: h("p", { class: "message", role: "status" }),
      join: h("button", { type: "button", hidden: true }, "Join waitlist", hiddenText(` for ${id}`)),
    };
    const signUp = h("button", { type: "button", class: "primary" }, "Sign up", hiddenText(` for ${id}`));
    signUp.addEventListener("click", () => enroll(id, card, signUp, false));
    card.join.addEventListener("click", () => enroll(id, card, card.join, true));
    card.item = h(
      "li",
      { class: "card", "data-course": id },
      h("h2", {}, h("span", { class: "id" }, id), " ", card.name),
      h("p", { class: "meta" }, card.lessons, card.seats, card.waiting, card.window),
      h("p", { class: "actions" }, signUp, card.join),
      card.message,
    );
    cards.set(id, card);
    return card;
  }

  function fill(card, course) {
    say(card.name, course.name);
    say(card.lessons, course.lessons === 1 ? "1 lesson" : `${course.lessons} lessons`);
    say(card.seats, seats(course));
    card.seats.classList.toggle("full", course.capacity !== null && course.seatsLeft <= 0);
    say(card.waiting, course.waitlisted ? `${course.waitlisted} on the waitlist` : "");
    say(card.window, windowText(course));
  }

  function render(courses) {
    const ids = courses.map((course) => course.courseId);
    for (const course of courses) fill(cards.get(course.courseId) || makeCard(course), course);
    for (const id of [...cards.keys()]) if (!ids.includes(id)) cards.delete(id);
    const shown = [...list.children].map((item) => item.dataset.course);
    // Only a changed list is rebuilt, so a focused button or a message stays where it is.
    if (shown.join("\n") !== ids.join("\n")) list.replaceChildren(...ids.map((id) => cards.get(id).item));
  }

  async function refresh(asked) {
    const mine = ++latest; // the newest request wins over a slower older one
    announce = announce || asked;
    try {
      const envelope = await api("GET", address());
      if (mine !== latest) return;
      render(envelope.data);
      pages.update(envelope.page);
      if (announce || status.dataset.failed) {
        announce = false;
        delete status.dataset.failed;
        const count = envelope.data.length;
        say(status, count ? `${count} course${count === 1 ? "" : "s"} on this page.` : "No course matches.");
      }
    } catch (error) {
      if (mine !== latest) return;
      status.dataset.failed = "1";
      say(status, error.message);
    }
  }

  async function enroll(id, card, button, waitlist) {
    const me = session();
    if (!me) {
      card.message.replaceChildren("You need to sign in first: ", link("/portal/sign-in?next=/", "Sign in"), ".");
      return;
    }
    button.disabled = true;
    try {
      const { data } = await api("POST", studentPath(me.email), { courseId: id, waitlist });
      card.join.hidden = true;
      say(card.message, data.status === "enrolled" ? "Enrolled." : `Waitlisted, position ${data.position}.`);
      refresh(false);
    } catch (error) {
      say(card.message, error.message);
      const full = error.status === 409 && error.message === "Course is full.";
      card.join.hidden = !full;
      if (full) card.join.focus();
    } finally {
      button.disabled = false;
    }
  }

  let typing = null;
  function searchNow() {
    clearTimeout(typing);
    pages.reset();
    refresh(true);
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    searchNow();
  });
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(searchNow, 300);
  });
  available.addEventListener("change", searchNow);

  refresh(true);
  Portal.every(REFRESH_MS, () => refresh(false));
})();
