"use strict";
// The other students enrolled in one of the student's courses.

(() => {
  const { api, h, say, session, studentPath } = Portal;
  const me = session();
  if (!me) {
    Portal.toSignIn("Sign in to see your classmates.");
    return;
  }
  const course = Portal.param("course");
  const list = document.getElementById("people");
  const status = document.getElementById("status");
  say(Portal.slot("course"), course ? `in ${course.toUpperCase()}` : "");
  const pages = Portal.pager(load);

  async function load() {
    if (!course) {
      say(status, "No course is named: open Classmates from My courses.");
      return;
    }
    const query = new URLSearchParams({ limit: "50" });
    if (pages.cursor) query.set("cursor", pages.cursor);
    try {
      const envelope = await api(
        "GET",
        `${studentPath(me.email)}/${encodeURIComponent(course)}/classmates?${query}`,
      );
      list.replaceChildren(...envelope.data.map((row) => h("li", {}, row.studentId)));
      pages.update(envelope.page);
      say(status, envelope.data.length ? "" : "No one else is enrolled yet.");
    } catch (error) {
      say(status, error.message);
    }
  }

  load();
})();
