"use strict";
// The registrar's view: every course with Edit, Roster and Audit trail; CSV import; links to the dashboard.

(() => {
  const { api, h, hiddenText, link, say, session, slot } = Portal;
  const MAX_BODY_BYTES = 64 * 1024;
  const me = session();
  if (!me) {
    Portal.toSignIn("Sign in with a registrar's token to open the registrar view.");
    return;
  }
  if (!me.admin) {
    Portal.notice("The registrar view needs a registrar's token; you are signed in as a student.");
    return;
  }
  slot("registrar-only").hidden = false;

  const search = document.getElementById("q");
  const list = document.getElementById("courses");
  const status = document.getElementById("status");
  const pages = Portal.pager(load);

  function figures(course) {
    const capacity = course.capacity === null ? "unlimited" : String(course.capacity);
    return `${course.enrolled} enrolled of ${capacity} · ${course.waitlisted} on the waitlist · ${Portal.seats(course)}`;
  }

  function row(course) {
    const id = encodeURIComponent(course.courseId);
    return h(
      "li",
      { class: "card", "data-course": course.courseId },
      h("h3", {}, h("span", { class: "id" }, course.courseId), " ", h("span", { class: "name" }, course.name)),
      h("p", { class: "meta" }, figures(course)),
      h(
        "p",
        { class: "actions links" },
        link(`/portal/registrar/course?course=${id}`, "Edit", hiddenText(` ${course.courseId}`)),
        link(`/portal/registrar/roster?course=${id}`, "Roster", hiddenText(` of ${course.courseId}`)),
        link(`/portal/registrar/audit-trail?course=${id}`, "Audit trail", hiddenText(` of ${course.courseId}`)),
      ),
    );
  }

  async function load() {
    const query = new URLSearchParams({ limit: "20" });
    if (search.value.trim()) query.set("q", search.value.trim());
    if (pages.cursor) query.set("cursor", pages.cursor);
    try {
      const envelope = await api("GET", `/courses?${query}`);
      list.replaceChildren(...envelope.data.map(row));
      pages.update(envelope.page);
      say(status, envelope.data.length ? "" : "No course matches.");
    } catch (error) {
      say(status, error.message);
    }
  }

  document.getElementById("search").addEventListener("submit", (event) => {
    event.preventDefault();
    pages.reset();
    load();
  });

  document.getElementById("import-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = slot("import-message");
    const file = document.getElementById("csv-file").files[0];
    if (!file) {
      say(message, "Choose a CSV file first.");
      return;
    }
    const body = { csv: await file.text() };
    if (new Blob([JSON.stringify(body)]).size > MAX_BODY_BYTES) {
      say(message, "The file is larger than 64 KiB: import it with `course-signup import-courses` instead.");
      return;
    }
    say(message, "Importing…");
    try {
      const { data } = await api("POST", "/course-imports", body);
      say(message, `Imported ${data.added} new and ${data.changed} changed course${data.added + data.changed === 1 ? "" : "s"}.`);
      load();
    } catch (error) {
      say(message, error.message);
    }
  });

  load();
})();
