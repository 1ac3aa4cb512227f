"use strict";
// A course's audit trail, oldest first: every enrollment, waitlisting, promotion and drop, with its request id.

(() => {
  const { api, h, say, session, utc } = Portal;
  if (!session()) {
    Portal.toSignIn("Sign in with a registrar's token to read audit trails.");
    return;
  }
  const WORDS = {
    enrolled: "enrolled",
    waitlisted: "joined the waitlist",
    promoted: "promoted from the waitlist",
    dropped: "dropped",
    left_waitlist: "left the waitlist",
  };
  const course = Portal.param("course");
  const list = document.getElementById("events");
  const status = document.getElementById("status");
  say(Portal.slot("course"), course ? `of ${course.toUpperCase()}` : "");
  const pages = Portal.pager(load);

  function item(event) {
    return h(
      "li",
      {},
      h("time", { datetime: event.at }, utc(event.at)),
      " ",
      h("span", { class: "student" }, event.studentId),
      ` ${WORDS[event.type] || event.type}`,
      event.requestId ? h("span", { class: "request" }, ` (request ${event.requestId})`) : null,
    );
  }

  async function load() {
    if (!course) {
      say(status, "No course is named: open an audit trail from the registrar view.");
      return;
    }
    const query = new URLSearchParams({ limit: "100" });
    if (pages.cursor) query.set("cursor", pages.cursor);
    try {
      const envelope = await api("GET", `/courses/${encodeURIComponent(course)}/events?${query}`);
      list.replaceChildren(...envelope.data.map(item));
      pages.update(envelope.page);
      say(status, envelope.data.length ? "" : "Nothing has happened in this course yet.");
    } catch (error) {
      say(status, error.message);
    }
  }

  load();
})();
