"use strict";
// A course's roster: enrolled students by e-mail, then the waitlist by position.

(() => {
  const { api, h, say, session } = Portal;
  if (!session()) {
    Portal.toSignIn("Sign in with a registrar's token to read rosters.");
    return;
  }
  const course = Portal.param("course");
  const rows = document.getElementById("rows");
  const status = document.getElementById("status");
  say(Portal.slot("course"), course ? `of ${course.toUpperCase()}` : "");
  const pages = Portal.pager(load);

  async function load() {
    if (!course) {
      say(status, "No course is named: open a roster from the registrar view.");
      return;
    }
    const query = new URLSearchParams({ limit: "50" });
    if (pages.cursor) query.set("cursor", pages.cursor);
    try {
      const envelope = await api("GET", `/courses/${encodeURIComponent(course)}/students?${query}`);
      rows.replaceChildren(
        ...envelope.data.map((entry) =>
          h(
            "tr",
            {},
            h("td", {}, entry.studentId),
            h("td", {}, entry.status === "enrolled" ? "Enrolled" : `Waitlisted, position ${entry.position}`),
          ),
        ),
      );
      rows.parentElement.hidden = envelope.data.length === 0;
      pages.update(envelope.page);
      say(status, envelope.data.length ? "" : "No student has signed up yet.");
    } catch (error) {
      say(status, error.message);
    }
  }

  load();
})();
