"""The web portal end to end in headless Chromium: a student's morning, a registrar's, a rejected token, a phone.

Controls are found by the labels issue 13 names (`Sign up`, `Join waitlist`, `Confirm`, ...), as a screen
reader finds them. Each test also takes the screenshots of docs/screenshots/.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import TOKEN_KEY, Api, screenshot

pytestmark = pytest.mark.slow

WITHIN_2_S = 2000  # ms: how soon a change made elsewhere must show, without a reload
RATE = re.compile(r"^\d+\.\d$")  # requests per second, one decimal


def run_id() -> str:
    return uuid.uuid4().hex[:6].upper()


def expect(locator: Any, **options: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator, **options)


def sign_in_for_development(page: Any, email: str, *, registrar: bool = False) -> None:
    page.goto("/portal/sign-in")
    expect(page.get_by_text("Development only.")).to_be_visible()
    page.get_by_label("E-mail").fill(email)
    if registrar:
        page.get_by_label("Registrar").check()
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url("**/")
    expect(page.get_by_text(f"Signed in as {email}")).to_be_visible()


def mark_loaded(page: Any) -> None:
    """A flag in the page's window: it survives anything but a reload or a navigation."""
    page.evaluate("window.sameDocument = true")


def assert_not_reloaded(page: Any) -> None:
    assert page.evaluate("window.sameDocument === true"), "the page was reloaded"


def test_a_student_signs_up_joins_a_waitlist_is_promoted_and_drops(page: Any, api: Api):
    run = run_id()
    roomy, full = f"E2E{run}R", f"E2E{run}F"
    ada, bob, first = (f"{name}-{run.lower()}@example.com" for name in ("ada", "bob", "first"))
    api.create_course(roomy, "Robotics for beginners", lessons=12, capacity=5)
    api.create_course(full, "Full-stack seminar", lessons=8, capacity=1)
    api.sign_up(first, full)  # the only seat

    sign_in_for_development(page, ada)

    # Search as you type: only the matching course stays.
    page.get_by_label("Search").fill(roomy)
    course = page.locator(f'li[data-course="{roomy}"]')
    expect(page.locator("#courses > li")).to_have_count(1)
    expect(course.locator(".seats")).to_have_text("5 seats left")
    course.get_by_role("button", name=f"Sign up for {roomy}").click()
    expect(course.get_by_role("status")).to_have_text("Enrolled.")
    expect(course.locator(".seats")).to_have_text("4 seats left")

    # Another student signs up through the API: the figure falls without a reload.
    mark_loaded(page)
    api.sign_up(bob, roomy)
    expect(course.locator(".seats")).to_have_text("3 seats left", timeout=WITHIN_2_S)
    assert_not_reloaded(page)
    screenshot(page, "catalogue")

    # A full course: the service's sentence, then the waitlist at position 1.
    page.get_by_label("Search").fill(full)
    seminar = page.locator(f'li[data-course="{full}"]')
    expect(seminar.locator(".seats")).to_have_text("Full")
    seminar.get_by_role("button", name=f"Sign up for {full}").click()
    expect(seminar.get_by_role("status")).to_have_text("Course is full.")
    seminar.get_by_role("button", name=f"Join waitlist for {full}").click()
    expect(seminar.get_by_role("status")).to_have_text("Waitlisted, position 1.")
    expect(seminar.get_by_role("button", name="Join waitlist")).to_be_hidden()
    screenshot(page, "catalogue-full-course")

    # My courses: promoted when the first student drops through the API, without a reload.
    page.get_by_role("link", name="My courses").click()
    waiting = page.locator(f'li[data-course="{full}"]')
    expect(waiting.locator(".state")).to_have_text("Waitlisted, position 1")
    expect(page.locator(f'li[data-course="{roomy}"] .state')).to_have_text("Enrolled")
    expect(waiting.get_by_role("link", name="Classmates")).to_be_hidden()
    screenshot(page, "my-courses")
    mark_loaded(page)
    assert api.drop(first, full)["promoted"] == ada
    expect(waiting.locator(".state")).to_have_text("Enrolled", timeout=WITHIN_2_S)
    expect(page.get_by_text(f"You have a seat in {full} now")).to_be_visible()
    assert_not_reloaded(page)

    # Classmates of an enrolled course.
    page.get_by_role("link", name=f"Classmates in {roomy}").click()
    expect(page.get_by_role("list", name="Classmates").get_by_role("listitem")).to_have_text([bob])
    screenshot(page, "classmates")
    page.go_back()

    # Drop, after confirming in the page.
    entry = page.locator(f'li[data-course="{roomy}"]')
    entry.get_by_role("button", name=f"Drop {roomy}").click()
    confirm = entry.get_by_role("button", name=f"Confirm dropping {roomy}")
    expect(confirm).to_be_focused()
    screenshot(page, "drop-confirmation")
    confirm.click()
    expect(entry).to_have_count(0)
    expect(page.get_by_text(f"Dropped {roomy}.")).to_be_visible()
    assert api.course(roomy).json()["data"]["enrolled"] == 1  # bob alone


def test_a_registrar_creates_a_course_imports_a_catalogue_and_reads_the_dashboard(page: Any, api: Api):
    run = run_id()
    created, imported = f"E2E{run}N", f"E2E{run}I"
    registrar = f"registrar-{run.lower()}@example.com"

    # The development sign-in with the keyboard alone.
    page.goto("/portal/sign-in")
    page.get_by_label("E-mail").focus()
    page.keyboard.type(registrar)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Registrar")).to_be_focused()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url("**/")

    page.get_by_role("link", name="Registrar", exact=True).click()
    page.get_by_role("link", name="New course").click()
    expect(page.get_by_text("Times are in UTC")).to_be_visible()
    opens = (datetime.now(UTC) - timedelta(days=1)).replace(second=0, microsecond=0)  # a field shows no :00
    closes = opens + timedelta(days=30, hours=2)
    page.get_by_label("Course id").fill(created)
    page.get_by_label("Name").fill("Registration morning <b>live</b>")
    page.get_by_label("Lessons").fill("10")
    page.get_by_label("Capacity").fill("2")
    page.get_by_label("Registration opens").fill(opens.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Registration closes").fill(closes.strftime("%Y-%m-%dT%H:%M"))
    screenshot(page, "course-form")
    page.get_by_role("button", name="Create course").click()
    expect(page.get_by_text(f"Created {created}.")).to_be_visible()
    course = api.course(created).json()["data"]
    assert (course["capacity"], course["lessons"], course["name"]) == (2, 10, "Registration morning <b>live</b>")
    assert course["registrationOpensAt"] == opens.strftime("%Y-%m-%dT%H:%M:%SZ")  # the field was read as UTC
    assert course["registrationClosesAt"] == closes.strftime("%Y-%m-%dT%H:%M:%SZ")

    # Three students: two seats, one on the waitlist; they feed the roster, the trail and the dashboard.
    students = [f"s{i}-{run.lower()}@example.com" for i in range(3)]
    for student in students:
        api.sign_up(student, created, waitlist=True)

    # Edit: the same form, filled in, with Save.
    page.get_by_role("link", name="Registrar", exact=True).click()
    find(page, created)
    row = page.locator(f'li[data-course="{created}"]')
    expect(row.locator(".name")).to_have_text("Registration morning <b>live</b>")  # shown as text, not markup
    row.get_by_role("link", name=f"Edit {created}").click()
    expect(page.get_by_label("Capacity")).to_have_value("2")
    expect(page.get_by_label("Registration opens")).to_have_value(opens.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Lessons").fill("11")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text(f"Saved {created}.")).to_be_visible()
    assert api.course(created).json()["data"]["lessons"] == 11

    # CSV import: a bad line is named by its number and nothing is imported; then a good file.
    page.get_by_role("link", name="Registrar", exact=True).click()
    bad = f"courseId,name,capacity\n{imported}1,Good,10\n{imported}2,Bad,ten\n"
    page.get_by_label("CSV file").set_input_files(files=[csv_file(bad)])
    page.get_by_role("button", name="Import").click()
    report = page.locator('[data-slot="import-message"]')
    expect(report).to_contain_text("line 3")
    expect(report).to_contain_text("Nothing was imported")
    assert api.course(f"{imported}1").status_code == 404
    screenshot(page, "registrar-import-report")
    good = f"courseId,name,capacity\n{imported}1,Good,10\n{imported}2,Better,\n"
    page.get_by_label("CSV file").set_input_files(files=[csv_file(good)])
    page.get_by_role("button", name="Import").click()
    expect(report).to_have_text("Imported 2 new and 0 changed courses.")
    assert api.course(f"{imported}2").json()["data"]["capacity"] is None

    # Roster and audit trail.
    find(page, created)
    screenshot(page, "registrar")
    row.get_by_role("link", name=f"Roster of {created}").click()
    expect(page.get_by_role("cell", name=students[2])).to_be_visible()
    expect(page.get_by_role("row")).to_have_count(4)  # the header and three students
    expect(page.get_by_role("cell", name="Waitlisted, position 1")).to_be_visible()
    screenshot(page, "roster")
    page.go_back()
    find(page, created)
    row.get_by_role("link", name=f"Audit trail of {created}").click()
    expect(page.get_by_role("list", name="Events, oldest first").get_by_role("listitem")).to_have_count(3)
    expect(page.get_by_text(f"{students[2]} joined the waitlist")).to_be_visible()
    screenshot(page, "audit-trail")
    page.go_back()

    # The dashboard: readiness, request rate and the busiest course's minute-by-minute chart.
    page.get_by_role("link", name="Dashboard").click()
    busiest = page.locator(f'#busiest li[data-course="{created}"]')
    expect(busiest.locator(".seats")).to_have_text("Full")
    expect(busiest.locator(".waitlist")).to_have_text("1")
    chart = busiest.get_by_role("img")
    expect(chart).to_have_attribute(
        "aria-label", re.compile(f"^Sign-ups per minute in {created}: 3 sign-ups in the last hour")
    )
    expect(chart.locator("rect")).not_to_have_count(0)
    expect(page.locator('[data-slot="ready"]')).to_have_text("Ready (database answering)")
    expect(page.locator('[data-slot="rate"]')).to_have_text(RATE, timeout=5000)
    mark_loaded(page)
    api.sign_up(f"late-{run.lower()}@example.com", created, waitlist=True)
    expect(busiest.locator(".waitlist")).to_have_text("2", timeout=3000)  # refreshed every 2 s
    assert_not_reloaded(page)
    screenshot(page, "dashboard")


def find(page: Any, course_id: str) -> None:
    """Search the registrar's course list for one course."""
    page.get_by_label("Search").fill(course_id)
    page.get_by_role("button", name="Find courses").click()
    expect(page.locator("#courses > li")).to_have_count(1)


def csv_file(text: str) -> dict[str, Any]:
    return {"name": "courses.csv", "mimeType": "text/csv", "buffer": text.encode()}


def test_a_token_the_service_refuses_sends_the_user_back_to_sign_in(page: Any, api: Api):
    page.goto("/portal/sign-in")
    page.get_by_label("Token").fill(forged_token())
    page.get_by_role("button", name="Use token").click()
    expect(page.locator('[data-slot="token-message"]')).to_have_text("The bearer token is not valid.")

    # A token the tab held becomes invalid: the next call answers 401 and the page goes to sign in.
    page.evaluate("([key, token]) => sessionStorage.setItem(key, token)", [TOKEN_KEY, forged_token()])
    page.goto("/portal/my-courses")
    page.wait_for_url(re.compile(r"/portal/sign-in\?next=%2Fportal%2Fmy-courses$"))
    expect(page.locator('[data-slot="notice"]')).to_have_text("The bearer token is not valid. Please sign in again.")

    # A good token pasted in: back where the user was going.
    page.get_by_label("Token").fill(api.token("cleo@example.com"))
    page.get_by_role("button", name="Use token").click()
    page.wait_for_url("**/portal/my-courses")
    expect(page.get_by_text("You have no courses yet.")).to_be_visible()
    screenshot(page, "sign-in")  # overwritten below with the page as it first shows
    page.get_by_role("button", name="Sign out").click()
    page.goto("/portal/sign-in")
    screenshot(page, "sign-in")


def forged_token() -> str:
    import jwt

    claims = {"sub": "mallory@example.com", "role": "admin", "exp": 4_102_444_800}
    return jwt.encode(claims, "not-the-service-secret-" + "x" * 32, algorithm="HS256")


def test_the_catalogue_pages_through_results_and_keeps_to_open_seats_on_request(page: Any, api: Api):
    run = run_id()
    lines = [f"P{run}{i:02d},Paged course {i},{0 if i % 5 == 0 else 10}" for i in range(25)]  # five are full
    imported = api.call("POST", "/course-imports", as_="setup@example.com", admin=True, json={"csv": csv(lines)})
    assert imported.json()["data"]["added"] == 25, imported.text
    page.goto("/")
    cards = page.locator("#courses > li")
    page.get_by_label("Search").fill(f"p{run}")
    page.get_by_label("Search").press("Enter")
    expect(cards).to_have_count(20)
    expect(cards.first).to_have_attribute("data-course", f"P{run}00")
    next_page, previous_page = (page.get_by_role("button", name=f"{which} page") for which in ("Next", "Previous"))
    expect(previous_page).to_be_disabled()
    next_page.click()
    expect(cards).to_have_count(5)
    expect(cards.first).to_have_attribute("data-course", f"P{run}20")
    expect(next_page).to_be_disabled()
    previous_page.click()
    expect(cards).to_have_count(20)
    page.get_by_label("Open seats only").check()
    expect(cards).to_have_count(20)  # the five full ones are left out, so all fit on one page
    expect(page.locator(f'li[data-course="P{run}05"]')).to_have_count(0)
    expect(next_page).to_be_disabled()


def csv(lines: list[str]) -> str:
    return "courseId,name,capacity\n" + "\n".join(lines) + "\n"


def test_every_page_fits_a_390_px_phone_without_sideways_scrolling(page: Any, api: Api):
    run = run_id()
    long_course = f"E2E{run}L"
    student = f"a.student.with.a.rather.long.address-{run.lower()}@faculty-of-engineering.example.com"
    api.create_course(long_course, "Introduction to " + "very " * 12 + "long course names", capacity=3)
    api.sign_up(student, long_course)
    token = api.token("phone-registrar@example.com", admin=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/")
    page.evaluate("([key, token]) => sessionStorage.setItem(key, token)", [TOKEN_KEY, token])
    for path in (
        "/",
        "/portal/sign-in",
        "/portal/my-courses",
        f"/portal/classmates?course={long_course}",
        "/portal/registrar",
        f"/portal/registrar/course?course={long_course}",
        f"/portal/registrar/roster?course={long_course}",
        f"/portal/registrar/audit-trail?course={long_course}",
        "/portal/registrar/dashboard",
    ):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width} px wide"
        if path == "/":
            expect(page.locator(f'li[data-course="{long_course}"]')).to_be_visible()
            screenshot(page, "catalogue-phone", full_page=False)
