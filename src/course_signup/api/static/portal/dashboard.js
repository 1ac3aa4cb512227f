"use strict";
// Registration morning: readiness, requests per second, and sign-ups per minute over the last hour for the
// busiest courses, as small bar charts drawn in SVG. Refreshed every 2 seconds.

(() => {
  const { api, h, hiddenText, link, say, seats, session, slot } = Portal;
  const REFRESH_MS = 2000;
  const SVG = "http://www.w3.org/2000/svg";
  const me = session();
  if (!me) {
    Portal.toSignIn("Sign in with a registrar's token to open the dashboard.");
    return;
  }
  const list = document.getElementById("busiest");
  const status = document.getElementById("status");
  let previous = null; // {served, at}: the last count of requests, for the rate
  let drawn = ""; // the figures on screen; unchanged ones are not redrawn, so keyboard focus stays put

  function svg(tag, attributes) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    return node;
  }

  // One bar per minute, oldest on the left; the tallest bar is the peak minute.
  function chart(values, label) {
    const width = values.length * 4;
    const peak = Math.max(1, ...values);
    const total = values.reduce((sum, value) => sum + value, 0);
    const node = svg("svg", {
      viewBox: `0 0 ${width} 40`,
      preserveAspectRatio: "none",
      class: "chart",
      role: "img",
      "aria-label": `${label}: ${total} sign-ups in the last hour, at most ${Math.max(0, ...values)} in a minute.`,
    });
    values.forEach((value, minute) => {
      if (!value) return;
      const height = Math.max(1, (value / peak) * 38);
      node.append(svg("rect", { x: minute * 4, y: 40 - height, width: 3, height }));
    });
    node.append(svg("line", { x1: 0, y1: 39.5, x2: width, y2: 39.5, class: "axis" }));
    return node;
  }

  // What the chart's two ends stand for; screen readers have the chart's own label.
  function axis() {
    return h("p", { class: "axis-labels", "aria-hidden": "true" }, h("span", {}, "an hour ago"), h("span", {}, "now"));
  }

  function card(course) {
    const id = encodeURIComponent(course.courseId);
    const signUps = course.signUps.reduce((sum, value) => sum + value, 0);
    return h(
      "li",
      { class: "card", "data-course": course.courseId },
      h("h3", {}, h("span", { class: "id" }, course.courseId), " ", h("span", { class: "name" }, course.name)),
      h(
        "dl",
        { class: "figures" },
        h("div", {}, h("dt", {}, "Seats"), h("dd", { class: "seats" }, seats(course))),
        h("div", {}, h("dt", {}, "Waitlist"), h("dd", { class: "waitlist" }, String(course.waitlisted))),
        h("div", {}, h("dt", {}, "Sign-ups, last hour"), h("dd", {}, String(signUps))),
      ),
      chart(course.signUps, `Sign-ups per minute in ${course.courseId}`),
      axis(),
      h(
        "p",
        { class: "links" },
        link(`/portal/registrar/roster?course=${id}`, "Roster", hiddenText(` of ${course.courseId}`)),
        link(`/portal/registrar/audit-trail?course=${id}`, "Audit trail", hiddenText(` of ${course.courseId}`)),
      ),
    );
  }

  async function readiness() {
    try {
      const { data } = await api("GET", "/ready");
      say(slot("ready"), `Ready (${Object.keys(data).join(", ")} answering)`);
    } catch (error) {
      say(slot("ready"), error.message);
    }
  }

  function rate(served) {
    const now = performance.now();
    if (previous && now > previous.at) {
      const perSecond = ((served - previous.served) * 1000) / (now - previous.at);
      say(slot("rate"), perSecond.toFixed(1));
    }
    previous = { served, at: now };
  }

  async function refresh() {
    readiness();
    try {
      const { data } = await api("GET", "/dashboard");
      rate(data.requestsServed);
      const figures = JSON.stringify([data.since, data.signUps, data.courses]);
      if (figures !== drawn) {
        drawn = figures;
        say(slot("total"), String(data.signUps.reduce((sum, value) => sum + value, 0)));
        slot("total-chart").replaceChildren(chart(data.signUps, "Sign-ups per minute, every course"), axis());
        list.replaceChildren(...data.courses.map(card));
      }
      say(status, data.courses.length ? "" : "No sign-ups in the last hour.");
      say(slot("updated"), `Updated ${new Date().toISOString().slice(11, 19)} UTC.`);
    } catch (error) {
      say(status, error.message);
    }
  }

  refresh();
  Portal.every(REFRESH_MS, refresh);
})();
