"use strict";
// Create a course, or edit one (?course=ID). datetime-local values are read and written as UTC.

(() => {
  const { api, say, session, slot } = Portal;
  const me = session();
  if (!me) {
    Portal.toSignIn("Sign in with a registrar's token to manage courses.");
    return;
  }
  if (!me.admin) {
    Portal.notice("Managing courses needs a registrar's token; you are signed in as a student.");
    return;
  }
  const editing = Portal.param("course").toUpperCase();
  const form = document.getElementById("course-form");
  const field = (id) => document.getElementById(id);
  const message = slot("form-message");
  form.hidden = false;

  // "2026-11-25T08:00" (a datetime-local value, meant as UTC) -> "2026-11-25T08:00:00Z"; "" -> null
  function toRfc3339(value) {
    if (!value) return null;
    return `${value.length === 16 ? `${value}:00` : value.slice(0, 19)}Z`;
  }

  // "2026-11-25T08:00:00Z" -> "2026-11-25T08:00:00" for a datetime-local input; null -> ""
  function toLocalInput(moment) {
    return moment ? moment.slice(0, 19) : "";
  }

  function whole(value) {
    return value === "" ? null : Number(value);
  }

  function show(course) {
    field("course-id").value = course.courseId;
    field("name").value = course.name;
    field("lessons").value = String(course.lessons);
    field("capacity").value = course.capacity === null ? "" : String(course.capacity);
    field("opens").value = toLocalInput(course.registrationOpensAt);
    field("closes").value = toLocalInput(course.registrationClosesAt);
  }

  function fields() {
    return {
      name: field("name").value,
      lessons: whole(field("lessons").value) ?? 0,
      capacity: whole(field("capacity").value),
      registrationOpensAt: toRfc3339(field("opens").value),
      registrationClosesAt: toRfc3339(field("closes").value),
    };
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      if (editing) {
        const { data } = await api("PATCH", `/courses/${encodeURIComponent(editing)}`, fields());
        show(data);
        say(message, `Saved ${data.courseId}.`);
      } else {
        const { data } = await api("POST", "/courses", { courseId: field("course-id").value.trim(), ...fields() });
        form.reset();
        say(message, `Created ${data.courseId}.`);
      }
    } catch (error) {
      say(message, error.message);
    }
  });

  if (editing) {
    say(slot("heading"), `Edit ${editing}`);
    say(slot("submit"), "Save");
    field("course-id").readOnly = true;
    api("GET", `/courses/${encodeURIComponent(editing)}`)
      .then(({ data }) => show(data))
      .catch((error) => say(message, error.message));
  }
})();
