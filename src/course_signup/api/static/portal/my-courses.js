"use strict";
// A student's courses: enrolled or waitlisted with the position, Drop (after Confirm), Classmates.
// Refreshed every second, so a promotion from the waitlist shows without a reload.

(() => {
  const { api, h, hiddenText, link, notice, say, session, studentPath } = Portal;
  const REFRESH_MS = 1000;
  const MAX_PAGES = 10; // 1,000 entries: more than any student holds
  const me = session();
  if (!me) {
    Portal.toSignIn("Sign in to see your courses.");
    return;
  }
  const list = document.getElementById("entries");
  const status = document.getElementById("status");
  const entries = new Map(); // courseId -> entry

  function makeEntry(course) {
    const id = course.courseId;
    const entry = {
      name: h("span", { class: "name" }),
      state: h("span", { class: "state" }),
      classmates: link(`/portal/classmates?course=${encodeURIComponent(id)}`, "Classmates", hiddenText(` in ${id}`)),
      drop: h("button", { type: "button" }, "Drop", hiddenText(` ${id}`)),
      confirm: h("button", { type: "button", class: "danger" }, "Confirm", hiddenText(` dropping ${id}`)),
      cancel: h("button", { type: "button" }, "Cancel"),
    };
    entry.question = h("p", { class: "confirm", hidden: true }, `Drop ${id}? `, entry.confirm, " ", entry.cancel);
    entry.drop.addEventListener("click", () => {
      entry.question.hidden = false;
      entry.confirm.focus();
    });
    entry.cancel.addEventListener("click", () => {
      entry.question.hidden = true;
      entry.drop.focus();
    });
    entry.confirm.addEventListener("click", () => drop(id, entry));
    entry.item = h(
      "li",
      { class: "card", "data-course": id },
      h("h2", {}, h("span", { class: "id" }, id), " ", entry.name),
      h("p", { class: "meta" }, entry.state),
      h("p", { class: "actions" }, entry.classmates, entry.drop),
      entry.question,
    );
    entries.set(id, entry);
    return entry;
  }

  function fill(entry, course) {
    const enrolled = course.status === "enrolled";
    if (enrolled && entry.status === "waitlisted") notice(`You have a seat in ${course.courseId} now: enrolled.`);
    entry.status = course.status;
    say(entry.name, course.name);
    say(entry.state, enrolled ? "Enrolled" : `Waitlisted, position ${course.position}`);
    entry.classmates.hidden = !enrolled;
  }

  function render(courses) {
    const ids = courses.map((course) => course.courseId);
    for (const course of courses) fill(entries.get(course.courseId) || makeEntry(course), course);
    for (const id of [...entries.keys()]) if (!ids.includes(id)) entries.delete(id);
    const shown = [...list.children].map((item) => item.dataset.course);
    if (shown.join("\n") !== ids.join("\n")) list.replaceChildren(...ids.map((id) => entries.get(id).item));
    if (!courses.length) {
      status.replaceChildren("You have no courses yet. Find one in the ", link("/", "catalogue"), ".");
    } else {
      say(status, "");
    }
  }

  async function refresh() {
    const courses = [];
    let cursor = null;
    try {
      for (let page = 0; page < MAX_PAGES; page++) {
        const query = new URLSearchParams({ limit: "100" });
        if (cursor) query.set("cursor", cursor);
        const envelope = await api("GET", `${studentPath(me.email)}?${query}`);
        courses.push(...envelope.data);
        cursor = envelope.page.nextCursor;
        if (!cursor) break;
      }
      render(courses);
    } catch (error) {
      say(status, error.message);
    }
  }

  async function drop(id, entry) {
    entry.confirm.disabled = true;
    try {
      await api("DELETE", `${studentPath(me.email)}/${encodeURIComponent(id)}`);
      notice(entry.status === "enrolled" ? `Dropped ${id}.` : `Left the waitlist for ${id}.`);
      entries.delete(id);
      entry.item.remove();
      await refresh();
    } catch (error) {
      notice(error.message);
    } finally {
      entry.confirm.disabled = false;
    }
  }

  refresh();
  Portal.every(REFRESH_MS, refresh);
})();
