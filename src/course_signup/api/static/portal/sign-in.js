"use strict";
// Sign in with a pasted token (checked against the service at once), or with the development sign-in.

(() => {
  const { api, nextPath, say, signIn, signOut, slot, studentPath } = Portal;

  Portal.notice(Portal.takeNotice());

  const tokenForm = document.getElementById("token-form");
  tokenForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = slot("token-message");
    const token = document.getElementById("token").value.trim();
    if (!signIn(token)) {
      say(message, "That is not a token: paste the whole JWT, three parts separated by dots.");
      return;
    }
    try {
      // Any call that needs the token proves the service accepts it; the student's own list is the smallest.
      await api("GET", `${studentPath(Portal.claimsOf(token).sub)}?limit=1`, undefined, { stay: true });
      location.assign(nextPath());
    } catch (error) {
      signOut();
      say(message, error.message);
    }
  });

  const devForm = document.getElementById("dev-form");
  if (devForm) {
    devForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = {
        email: document.getElementById("email").value,
        registrar: document.getElementById("registrar").checked,
      };
      try {
        const { data } = await api("POST", "/portal/dev-sign-in", body, { stay: true });
        signIn(data.token);
        location.assign(nextPath());
      } catch (error) {
        say(slot("dev-message"), error.message);
      }
    });
  }
})();
