"""The web console end to end, in headless Chromium (Debian's package)
driven by Playwright, against a real `rein serve` that
crates/rein-cli/tests/console_browser.rs started with the example refund
policy and a tokens file of an agent, two approvers and an admin.

Written against the page contract of the console (the shared design of
issue 19). Every page is checked for that contract (one h1, the nav, the
security headers, no Content-Security-Policy violation) and with axe-core
(any violation of impact serious or critical fails), and a screenshot of it
is kept, at desktop and at phone width.

Environment (all required): REIN_URL, REIN_TOKEN_AGENT, REIN_TOKEN_APPROVER
(the approver who grants), REIN_TOKEN_REQUESTER (an approver the agent acts as,
asking for an approval in their name), REIN_TOKEN_ADMIN, REIN_APPROVER_NAME,
REIN_REQUESTER_NAME, REIN_REQUEST (the example request JSON), REIN_CHROMIUM,
REIN_AXE_JS, REIN_SCREENSHOTS.

Exits 0 when every check passed; otherwise prints what failed (and the
page's text) and exits 1.
"""

import http.server
import json
import os
import re
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

from playwright.sync_api import expect, sync_playwright

URL = os.environ["REIN_URL"].rstrip("/")
AGENT = os.environ["REIN_TOKEN_AGENT"]
APPROVER = os.environ["REIN_TOKEN_APPROVER"]
REQUESTER = os.environ["REIN_TOKEN_REQUESTER"]
ADMIN = os.environ["REIN_TOKEN_ADMIN"]
APPROVER_NAME = os.environ["REIN_APPROVER_NAME"]
REQUESTER_NAME = os.environ["REIN_REQUESTER_NAME"]
CHROMIUM = os.environ["REIN_CHROMIUM"]
AXE_JS = open(os.environ["REIN_AXE_JS"], encoding="utf-8").read()
SHOTS = os.environ["REIN_SCREENSHOTS"]
with open(os.environ["REIN_REQUEST"], encoding="utf-8") as f:
    EXAMPLE_REQUEST = json.load(f)

# The flags every headless run here uses: no sandbox (root in CI), no GPU,
# and nothing that reaches out to the network on its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
RULE = "medium_refund_needs_support"
RULE_REASON = "refunds between 100 and 1000 need a support lead"
SESSION = "browser-run-1"
# Long enough for a page on a loaded 2-core machine; the SSE row must come
# within it too (the server polls its store every second besides).
WAIT_MS = 15_000
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}

checks = 0


def ok(what):
    global checks
    checks += 1
    print(f"ok {checks} - {what}", flush=True)


class Failed(Exception):
    pass


def check(cond, what, detail=""):
    if not cond:
        raise Failed(f"{what}{': ' + str(detail) if detail != '' else ''}")


# ---- the API, as the agent and the admin use it -------------------------


def api(method, path, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, text


def refund(amount, actor_id, approval=None):
    request = json.loads(json.dumps(EXAMPLE_REQUEST))
    request["input"]["amount"] = amount
    request["actor"]["role"] = "agent"
    request["actor"]["id"] = actor_id
    request["session"] = SESSION
    if approval is not None:
        request["approval"] = approval
    return request


def decide(token, request, effect):
    status, answer = api("POST", "/v1/decide", token, request)
    check(status == 200, "/v1/decide answers 200", f"{status} {answer}")
    check(answer.get("effect") == effect, f"/v1/decide says {effect}", answer)
    return answer


def approval_state(approval_id):
    status, answer = api("GET", f"/v1/approvals/{approval_id}", ADMIN)
    check(status == 200, f"GET /v1/approvals/{approval_id}", f"{status} {answer}")
    return answer.get("state") or answer.get("approval", {}).get("state")


def audit_records():
    status, answer = api("GET", "/v1/audit/verify", ADMIN)
    check(status == 200 and answer.get("intact") is True, "the audit log verifies", answer)
    return answer["records"]


# ---- pages ---------------------------------------------------------------


class Pages:
    """Contract, accessibility and screenshot checks shared by every page."""

    def __init__(self):
        self.csp_errors = []
        self.shot_names = set()

    def watch(self, page):
        def on_console(msg):
            if "Content Security Policy" in msg.text or "Content-Security-Policy" in msg.text:
                self.csp_errors.append(f"{page.url}: {msg.text}")

        page.on("console", on_console)
        return page

    def headers(self, response, what):
        h = response.headers
        check(h.get("content-security-policy") == CSP, f"{what}: Content-Security-Policy", h.get("content-security-policy"))
        check(h.get("x-frame-options", "").upper() == "DENY", f"{what}: X-Frame-Options DENY", h.get("x-frame-options"))
        check(h.get("referrer-policy") == "no-referrer", f"{what}: Referrer-Policy", h.get("referrer-policy"))
        check(h.get("x-content-type-options") == "nosniff", f"{what}: X-Content-Type-Options", h.get("x-content-type-options"))
        check("no-store" in h.get("cache-control", ""), f"{what}: Cache-Control no-store", h.get("cache-control"))

    def contract(self, page, what, h1, nav=None):
        """The page contract's common part; `nav`: the links the role sees."""
        check(page.evaluate("document.documentElement.lang") == "en", f"{what}: <html lang=en>")
        viewport = page.evaluate(
            "() => { const m = document.querySelector('meta[name=viewport]'); return m && m.content }"
        )
        check(
            viewport is not None and re.sub(r"\s", "", viewport) == "width=device-width,initial-scale=1",
            f"{what}: viewport meta",
            viewport,
        )
        h1s = page.locator("h1").all_inner_texts()
        check(len(h1s) == 1, f"{what}: exactly one h1", h1s)
        check(h1s[0].strip() == h1, f"{what}: h1 is {h1!r}", h1s[0])
        if nav is not None:
            links = page.locator('nav[aria-label="Console"] a').all_inner_texts()
            links = [l.strip() for l in links]
            check(links == nav, f"{what}: nav links {nav}", links)
            sign_out = page.locator('nav[aria-label="Console"] form[method="post" i] button', has_text="Sign out")
            if sign_out.count() == 0:
                sign_out = page.locator('form[method="post" i] button', has_text="Sign out")
            check(sign_out.count() == 1, f"{what}: a Sign out button in a POST form")
        for form in page.locator('form[method="post" i]').all():
            check(
                form.locator('input[type=hidden][name="csrf"]').count() == 1,
                f"{what}: every POST form carries csrf",
                form.evaluate("f => f.outerHTML.slice(0, 300)"),
            )
        inline = page.evaluate(
            "() => [document.querySelectorAll('script:not([src])').length, document.querySelectorAll('[style]').length,"
            " [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length]"
        )
        check(inline == [0, 0, 0], f"{what}: no inline script, style= or on*= attribute", inline)

    def axe(self, page, what):
        page.evaluate(AXE_JS + "\n;0")
        result = page.evaluate(
            "async () => { const r = await axe.run(document, {resultTypes: ['violations', 'incomplete']});"
            " const slim = v => ({id: v.id, impact: v.impact, help: v.help,"
            "   nodes: v.nodes.map(n => n.target.join(' ') + ' | ' + (n.failureSummary || '').replace(/\\s+/g, ' '))});"
            " return {violations: r.violations.map(slim), incomplete: r.incomplete.map(slim),"
            "   ran: r.passes.map(p => p.id).concat(r.violations.map(v => v.id), r.incomplete.map(v => v.id))}; }"
        )
        bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
        for v in result["violations"]:
            if v not in bad:
                print(f"  note: {what}: axe {v['impact']} {v['id']}: {v['help']} {v['nodes'][:3]}")
        for v in result["incomplete"]:
            if v["id"] == "color-contrast":
                print(f"  note: {what}: axe could not decide color-contrast on {v['nodes'][:3]}")
        check(not bad, f"{what}: axe-core finds no serious or critical violation", json.dumps(bad, indent=1))
        for rule in ("color-contrast", "label", "landmark-one-main", "region", "document-title", "html-has-lang"):
            if rule == "label" and page.locator("input:not([type=hidden]), textarea, select").count() == 0:
                continue
            if rule == "color-contrast" and any(v["id"] == rule for v in result["incomplete"]):
                continue
            check(rule in result["ran"], f"{what}: axe rule {rule} applied", result["ran"])

    def no_horizontal_scroll(self, page, what):
        widths = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth, window.innerWidth]"
        )
        check(widths[0] <= widths[1], f"{what}: no horizontal scroll at {PHONE['width']} px", widths)

    def shot(self, page, name):
        path = os.path.join(SHOTS, f"{name}.png")
        page.screenshot(path=path, full_page=True)
        self.shot_names.add(name)

    def full(self, page, response, what, h1, nav=None, name=None):
        """Every check a page gets, then its screenshot."""
        if response is not None:
            check(response.status == 200, f"{what}: HTTP 200", response.status)
            self.headers(response, what)
        self.contract(page, what, h1, nav)
        self.axe(page, what)
        if name is not None:
            self.shot(page, name)
        ok(f"{what}: contract, headers, axe-core{', screenshot ' + name if name else ''}")


def goto(page, path):
    response = page.goto(URL + path, wait_until="load")
    check(response is not None, f"GET {path} answered")
    return response


def sign_in(context, pages, token, landing):
    """Signs in through the form; returns the page (at `landing`)."""
    page = pages.watch(context.new_page())
    goto(page, "/console/login")
    page.get_by_label("Token", exact=True).fill(token)
    with page.expect_response(lambda r: r.url == URL + "/console/login" and r.request.method == "POST") as answer:
        with page.expect_navigation(wait_until="load"):
            page.get_by_role("button", name="Sign in").click()
    refused_as_cross_site(answer.value, page.locator("body").inner_text())
    check(urllib.parse.urlsplit(page.url).path == landing, f"sign-in lands on {landing}", page.url)
    cookie = [c for c in context.cookies(URL + "/console") if c["name"] == "rein_console"]
    check(len(cookie) == 1, "sign-in sets the rein_console cookie", context.cookies(URL + "/console"))
    c = cookie[0]
    check(c["httpOnly"] is True, "rein_console is HttpOnly", c)
    check(c["sameSite"] == "Strict", "rein_console is SameSite=Strict", c)
    check(c["path"] == "/console", "rein_console has Path=/console", c)
    check(token not in c["value"] and c["value"].startswith("s1."),
          "rein_console holds a signed session, not the bearer token", c)
    check(c["expires"] > 0, "rein_console has a bounded lifetime (Max-Age)", c)
    return page


def refused_as_cross_site(response, body):
    """Fails, saying what the browser sent, when the console's own
    same-origin form was refused as cross-site."""
    if response.status == 403 and "cross-site request refused" in body:
        sent = response.request.all_headers()
        raise Failed(
            f"the console's own form (POST {response.url}, same origin) was refused as cross-site; "
            f"the browser sent Origin: {sent.get('origin')!r}, Sec-Fetch-Site: {sent.get('sec-fetch-site')!r} "
            "(Chromium sends Origin: null on a form post from a page with Referrer-Policy: no-referrer)"
        )


def login_refused(page, token, status, text):
    goto(page, "/console/login")
    page.get_by_label("Token", exact=True).fill(token)
    with page.expect_response(
        lambda r: r.url == URL + "/console/login" and r.request.method == "POST"
    ) as answer:
        page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("load")
    got = answer.value
    body = page.locator("body").inner_text()
    refused_as_cross_site(got, body)
    check(got.status == status, f"a refused sign-in answers {status}", got.status)
    check(any(t in body for t in text), f"the refusal says {text}", body)
    check(
        not [c for c in page.context.cookies(URL + "/console") if c["name"] == "rein_console"],
        "a refused sign-in sets no rein_console cookie",
        page.context.cookies(URL + "/console"),
    )
    check(page.locator("h1").inner_text().strip() == "Sign in", "the refusal is the sign-in page again")


def redirected_to_login(page, path, why):
    response = goto(page, path)
    where = urllib.parse.urlsplit(page.url).path
    check(where == "/console/login", f"{why}: GET {path} ends at the sign-in page", page.url)
    first = response.request.redirected_from
    check(first is not None, f"{why}: GET {path} is redirected", response.status)
    check(first.response().status == 303, f"{why}: GET {path} answers 303", first.response().status)


class Attacker:
    """A page on another loopback origin whose form posts to the console."""

    def __init__(self, target):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = (
                    "<!doctype html><html lang=en><head><title>win a prize</title></head>"
                    "<body onload='document.forms[0].submit()'>"
                    f"<form method=post action='{target}'>"
                    "<input type=hidden name=comment value='forged'>"
                    "<input type=hidden name=csrf value='forged'>"
                    "</form></body></html>"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---- the run -------------------------------------------------------------


def run(browser):
    pages = Pages()
    os.makedirs(SHOTS, exist_ok=True)

    def context(viewport=DESKTOP):
        return browser.new_context(viewport=viewport)

    # Signed out: the sign-in page, a wrong token, an agent token, and
    # every console URL redirected to it.
    anon = context()
    page = pages.watch(anon.new_page())
    pages.full(page, goto(page, "/console/login"), "sign-in page", "Sign in", name="login")
    check(page.get_by_label("Token", exact=True).get_attribute("type") == "password", "the Token input is a password input")
    check(page.get_by_label("Token", exact=True).get_attribute("name") == "token", "the Token input is named token")
    login_refused(page, "made-up-token-0123456789", 401, ["not known", "does not verify"])
    ok("a wrong token: 401, 'not known', no cookie")
    pages.axe(page, "sign-in page after a wrong token")
    pages.shot(page, "login-refused")
    login_refused(page, AGENT, 403, ["agent tokens cannot sign in to the console"])
    ok("an agent token: 403, 'agent tokens cannot sign in to the console', no cookie")
    protected = [
        "/console/approvals",
        "/console/approvals/rows",
        "/console/audit",
        "/console/audit/1",
        "/console/sessions",
        "/console/policy",
        "/console/policy/playground",
    ]
    for path in protected:
        redirected_to_login(page, path, "no cookie")
    for token, who in (("made-up-token-0123456789", "a wrong token's cookie"), (AGENT, "an agent token's cookie")):
        host = urllib.parse.urlsplit(URL).hostname
        anon.add_cookies([{"name": "rein_console", "value": token, "domain": host, "path": "/console"}])
        for path in protected:
            redirected_to_login(page, path, who)
        anon.clear_cookies()
    ok("without a valid cookie (none, a wrong token's, an agent's) every console page redirects to sign-in")
    for path in ("/console/approvals/x/grant", "/console/policy/playground"):
        answer = anon.request.post(URL + path, form={"comment": "x", "csrf": "x"}, max_redirects=0)
        check(answer.status == 401, f"POST {path} without a cookie answers 401", answer.status)
    ok("POSTs without a cookie: 401")

    # The approver's inbox, open before the agent asks.
    approver = context()
    page = sign_in(approver, pages, APPROVER, "/console/approvals")
    inbox = page
    pages.full(inbox, goto(inbox, "/console/approvals"), "approvals (empty)", "Approvals", ["Approvals", "Sessions"])
    check("No pending approvals" in inbox.locator("body").inner_text(), "the empty inbox says 'No pending approvals'")
    # A reload would lose this.
    inbox.evaluate("window.reinNoReload = 'still here'")
    asked = decide(AGENT, refund(500, "support-bot"), "require_approval")
    check(asked.get("rules") == [RULE], "the request needs the rule's approval", asked)
    approval_id = asked["approval"]["id"]
    row = inbox.locator(f'tr[data-approval-id="{approval_id}"]')
    row.wait_for(state="visible", timeout=WAIT_MS)
    check(inbox.evaluate("window.reinNoReload") == "still here", "the row came without a reload")
    ok(f"the agent's request (approval {approval_id}) appears in the open inbox without a reload (SSE)")
    # The row's cells, the reason included, without a reload: the row may
    # be refreshed by a later event, so each is waited for (bounded).
    for word in ("refund", "support-bot", RULE, RULE_REASON):
        try:
            expect(row).to_contain_text(word, timeout=WAIT_MS)
        except AssertionError:
            raise Failed(f"the inbox row shows {word!r} (waited {WAIT_MS} ms, no reload): {row.inner_text()}")
    check(row.get_by_role("link", name="Open").count() == 1, "the row links to its page")
    check("No pending approvals" not in inbox.locator("body").inner_text(), "the empty text is gone")
    pages.full(inbox, None, "approvals", "Approvals", ["Approvals", "Sessions"], name="approvals")

    # The approval's page, granted with the keyboard and a comment.
    with page.expect_navigation(wait_until="load"):
        row.get_by_role("link", name="Open").click()
    check(urllib.parse.urlsplit(page.url).path == f"/console/approvals/{approval_id}", "Open goes to the approval's page", page.url)
    body = page.locator("body").inner_text()
    for word in ("refund", "support-bot", RULE, RULE_REASON, "pending", "ord_abc123"):
        check(word in body, f"the approval page shows {word!r}", body)
    response = goto(page, f"/console/approvals/{approval_id}")
    pages.full(page, response, "approval", "Approval", ["Approvals", "Sessions"], name="approval")
    grant_form = page.locator(f'form[action$="/console/approvals/{approval_id}/grant"]')
    check(grant_form.count() == 1, "a grant form posting to /console/approvals/{id}/grant")
    check(grant_form.get_attribute("method").lower() == "post", "the grant form is a POST")
    check(
        page.locator(f'form[action$="/console/approvals/{approval_id}/deny"]').count() == 1,
        "a deny form posting to /console/approvals/{id}/deny",
    )
    comment = grant_form.get_by_label("Comment", exact=True)
    check(comment.evaluate("e => e.tagName") == "TEXTAREA" and comment.get_attribute("name") == "comment", "the grant's Comment textarea")
    # Keyboard only: Tab from the top to the grant's comment, type, Tab to
    # Grant, Enter.
    page.evaluate("document.activeElement && document.activeElement.blur()")
    focus_js = (
        "() => { const e = document.activeElement; if (!e) return null; const f = e.closest('form');"
        " return {tag: e.tagName, text: (e.innerText || e.value || '').trim(), name: e.getAttribute('name'),"
        " form: f ? f.getAttribute('action') : null}; }"
    )
    reached = None
    for _ in range(80):
        page.keyboard.press("Tab")
        f = page.evaluate(focus_js)
        if f and f["tag"] == "TEXTAREA" and f["form"] and f["form"].endswith("/grant"):
            reached = f
            break
    check(reached is not None, "Tab reaches the grant's Comment")
    page.keyboard.type("checked the order with the customer")
    reached = None
    for _ in range(10):
        page.keyboard.press("Tab")
        f = page.evaluate(focus_js)
        if f and f["tag"] == "BUTTON":
            reached = f
            break
    check(reached is not None and reached["text"] == "Grant" and reached["form"].endswith("/grant"), "the next Tab stop is the Grant button", reached)
    ok("keyboard: Tab reaches the Comment, then the Grant button")
    with page.expect_navigation(wait_until="load"):
        page.keyboard.press("Enter")
    check(urllib.parse.urlsplit(page.url).path == f"/console/approvals/{approval_id}", "a grant returns to the approval page", page.url)
    body = page.locator("body").inner_text()
    check("granted" in body, "the approval page shows 'granted'", body)
    check("checked the order with the customer" in body, "the approval page shows the comment", body)
    check(page.get_by_role("button", name="Grant").count() == 0, "a granted approval has no Grant button")
    check(approval_state(approval_id) == "granted", "the store has it granted")
    pages.full(page, None, "approval (granted)", "Approval", ["Approvals", "Sessions"], name="approval-granted")
    ok("the approver granted it in the page, with a comment")
    goto(inbox, "/console/approvals")
    check(inbox.locator(f'tr[data-approval-id="{approval_id}"]').count() == 0, "a granted approval leaves the inbox")

    # The agent's retry, with the approval.
    used = decide(AGENT, refund(500, "support-bot", approval_id), "allow")
    check(used.get("rules") == [RULE], "the retry is allowed under the approval's rule", used)
    ok("the agent's retry with the approval is allowed")

    # The approver may not open admin pages.
    for path in ("/console/audit", "/console/policy"):
        response = goto(inbox, path)
        check(response.status == 403, f"an approver opening {path}: 403", response.status)
        check("your role may not open this page" in inbox.locator("body").inner_text(), f"{path} says why")
    ok("an approver's role may not open the audit log or the policy (403)")

    # The admin: the audit log filtered to the flow's records.
    admin = context()
    page = sign_in(admin, pages, ADMIN, "/console/audit")
    admin_nav = ["Approvals", "Sessions", "Audit log", "Policy"]
    pages.full(page, goto(page, "/console/audit"), "audit log", "Audit log", admin_nav)
    for label, name in (("Since", "since"), ("Until", "until"), ("Actor", "actor"), ("Action", "action"), ("Effect", "effect"), ("Rule", "rule"), ("Session", "session")):
        field = page.get_by_label(label, exact=True)
        check(field.count() == 1 and field.get_attribute("name") == name, f"the filter has {label!r} (name {name})")
    page.get_by_label("Rule", exact=True).fill(RULE)
    with page.expect_navigation(wait_until="load"):
        page.get_by_role("button", name="Filter").click()
    check(urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query).get("rule") == [RULE], "the filter is a GET with rule=", page.url)
    rows = page.locator("tr[data-seq]")
    seqs = [int(s) for s in rows.evaluate_all("rs => rs.map(r => r.dataset.seq)")]
    # The flow writes three records under the rule: the decision that asked
    # (before, require_approval), the grant (phase approval, effect allow,
    # actor the approver), and the retry (before, allow).
    status, api_answer = api("GET", "/v1/audit?" + urllib.parse.urlencode({"rule": RULE}), ADMIN)
    check(status == 200, "GET /v1/audit", api_answer)
    records = {r["seq"]: r for r in api_answer["records"]}
    check(len(seqs) == 3, "the audit filter by rule finds the three records", seqs)
    check(sorted(seqs) == sorted(records), "the console lists what the API finds", (seqs, sorted(records)))
    check(seqs == sorted(seqs, reverse=True), "newest first", seqs)
    oldest, grant, retry = (records[s] for s in sorted(seqs))
    check((oldest["phase"], oldest["effect"]) == ("before", "require_approval"), "record 1: the request", oldest)
    check(RULE_REASON in oldest["reasons"], "record 1's reason is the rule's", oldest["reasons"])
    check((grant["phase"], grant["effect"]) == ("approval", "allow"), "record 2: the grant", grant)
    check(
        any(f"approval `{approval_id}` granted by `{APPROVER_NAME}`" in r for r in grant["reasons"]),
        "record 2's reason names the approver",
        grant["reasons"],
    )
    check(grant["input"].get("comment") == "checked the order with the customer", "record 2 keeps the comment", grant["input"])
    check((retry["phase"], retry["effect"]) == ("before", "allow"), "record 3: the retry", retry)
    check(retry.get("approval") == approval_id, "record 3 used the approval", retry)
    for seq in seqs:
        text = page.locator(f'tr[data-seq="{seq}"]').inner_text()
        r = records[seq]
        for word in (r["phase"], r["effect"], "refund", RULE):
            check(word in text, f"the row of record {seq} shows {word!r}", text)
    pages.full(page, None, "audit log (filtered)", "Audit log", admin_nav, name="audit")
    ok(f"the audit filter by rule finds the three records {sorted(seqs)}: require_approval, the grant by {APPROVER_NAME}, allow")
    # By session: the two decisions (the grant is filed without a session).
    session = oldest["session"]
    check(session and session.endswith(SESSION), "the decisions carry the session", oldest)
    goto(page, "/console/audit?" + urllib.parse.urlencode({"session": session}))
    by_session = sorted(int(s) for s in page.locator("tr[data-seq]").evaluate_all("rs => rs.map(r => r.dataset.seq)"))
    check(by_session == [oldest["seq"], retry["seq"]], "the filter by session finds the two decisions of the session", by_session)
    goto(page, "/console/audit?" + urllib.parse.urlencode({"actor": APPROVER_NAME}))
    by_actor = [int(s) for s in page.locator("tr[data-seq]").evaluate_all("rs => rs.map(r => r.dataset.seq)")]
    check(by_actor == [grant["seq"]], "the filter by actor (the approver) finds the grant", by_actor)
    ok("the filters by session (2 decisions) and by actor (the grant) agree")
    # Export: the filtered set as JSON Lines.
    goto(page, "/console/audit?" + urllib.parse.urlencode({"rule": RULE}))
    export = page.get_by_role("link", name="Export JSON Lines")
    href = export.get_attribute("href")
    check(href is not None and urllib.parse.urlsplit(href).path == "/console/audit/export", "the export link", href)
    check(urllib.parse.parse_qs(urllib.parse.urlsplit(href).query).get("rule") == [RULE], "the export keeps the filter", href)
    answer = admin.request.get(urllib.parse.urljoin(URL + "/console/audit", href))
    check(answer.status == 200, "the export answers 200", answer.status)
    check(answer.headers.get("content-type", "").startswith("application/x-ndjson"), "the export is application/x-ndjson", answer.headers)
    lines = [json.loads(l) for l in answer.text().splitlines() if l.strip()]
    check(sorted(l["seq"] for l in lines) == sorted(seqs), "the export holds the filtered set", [l.get("seq") for l in lines])
    ok("Export JSON Lines: the three records")

    # The detail view of the retry: the rule, the explanation, the chain.
    goto(page, "/console/audit?" + urllib.parse.urlencode({"rule": RULE}))
    link = page.locator(f'tr[data-seq="{retry["seq"]}"] a[href$="/console/audit/{retry["seq"]}"]')
    check(link.count() == 1, "the row links to its record")
    with page.expect_navigation(wait_until="load"):
        link.click()
    response = goto(page, f"/console/audit/{retry['seq']}")
    pages.full(page, response, "audit record", f"Audit record {retry['seq']}", admin_nav, name="audit-record")
    body = page.locator("body").inner_text()
    check(RULE in body, "the detail view shows the matched rule", body)
    check("verified up to here" in body, "the detail view says 'verified up to here'", body)
    pre = page.locator("pre").first.inner_text()
    shown = json.loads(pre)
    check(shown.get("seq") == retry["seq"] and shown.get("decision_id") == retry["decision_id"], "the <pre> holds the record", pre[:400])
    explanation = page.get_by_role("heading", name="Explanation", exact=True)
    check(explanation.count() == 1, "a section 'Explanation'")
    section = explanation.locator("xpath=ancestor::section[1]")
    section_text = section.inner_text() if section.count() else body
    check(RULE in section_text, "the explanation names the rule", section_text)
    check(page.get_by_role("heading", name="Chain", exact=True).count() == 1, "a section 'Chain'")
    ok(f"audit record {retry['seq']}: the matched rule, the explanation and 'verified up to here'")
    # The grant's record too (not rebuildable as a request: it says why).
    response = goto(page, f"/console/audit/{grant['seq']}")
    pages.full(page, response, "audit record (grant)", f"Audit record {grant['seq']}", admin_nav, name="audit-record-grant")
    check("verified up to here" in page.locator("body").inner_text(), "the grant's record verifies too")

    # The session's timeline.
    response = goto(page, "/console/sessions")
    pages.full(page, response, "sessions", "Sessions", admin_nav, name="sessions")
    check(page.get_by_label("Session", exact=True).get_attribute("name") == "id", "the Session field is named id")
    link = page.locator(f'a[href*="/console/sessions/"]', has_text=session)
    if link.count() == 0:
        link = page.locator(f'a[href="/console/sessions/{urllib.parse.quote(session, safe="")}"]')
    check(link.count() >= 1, f"the sessions page lists {session}", page.locator("body").inner_text())
    with page.expect_navigation(wait_until="load"):
        link.first.click()
    response = goto(page, urllib.parse.urlsplit(page.url).path)
    pages.full(page, response, "session", f"Session {session}", admin_nav, name="session")
    timeline = page.locator("ol").first.inner_text()
    for word in ("require_approval", "allow", "refund", RULE):
        check(word in timeline, f"the session's timeline shows {word!r}", timeline)
    ok(f"session {session}: its timeline")

    # The policy and the playground.
    response = goto(page, "/console/policy")
    pages.full(page, response, "policy", "Policy", admin_nav, name="policy")
    body = page.locator("body").inner_text()
    status, health = api("GET", "/healthz", ADMIN)
    # The hash may be shown shortened: its first 12 digits at least.
    for word in ("2026-11-24.1", health["policy_version"][:12], "refund", "order.lookup", RULE, "small_refund", "lookups_allowed"):
        check(word in body, f"the policy page shows {word!r}", body[:2000])
    ok("the policy page: version label and hash, rules by action")
    before = audit_records()
    response = goto(page, "/console/policy/playground")
    pages.full(page, response, "playground", "Playground", admin_nav)
    small = refund(40, "support-bot")
    page.get_by_label("Request (JSON)", exact=True).fill(json.dumps(small, indent=2))
    with page.expect_navigation(wait_until="load"):
        page.get_by_role("button", name="Decide").click()
    body = page.locator("body").inner_text()
    check("allow" in body and "small_refund" in body, "the playground decides allow by small_refund", body)
    pages.full(page, None, "playground (decided)", "Playground", admin_nav, name="playground")
    # A draft with a mistake: its diagnostics with their spans.
    goto(page, "/console/policy/playground")
    page.get_by_label("Request (JSON)", exact=True).fill(json.dumps(small))
    draft = 'version: "draft"\ndefault: block\nrules:\n  - id: broken\n    action: refund\n    when: input.amount >\n    effect: allow\n'
    page.get_by_label("Draft policy (YAML, optional)", exact=True).fill(draft)
    with page.expect_navigation(wait_until="load"):
        page.get_by_role("button", name="Decide").click()
    body = page.locator("body").inner_text()
    check(re.search(r"(line\s*6\b|:6:\d+)", body, re.I) is not None, "the draft's diagnostic names line 6", body)
    pages.full(page, None, "playground (draft diagnostics)", "Playground", admin_nav, name="playground-diagnostics")
    check(audit_records() == before, "the playground wrote no audit record", (before, audit_records()))
    ok("the playground: a decision with its rule, a draft's diagnostics, nothing recorded")

    # An approver who asked cannot approve their own request: the agent acts
    # as them (the request's actor id is theirs).
    own = decide(AGENT, refund(600, REQUESTER_NAME), "require_approval")
    own_id = own["approval"]["id"]
    requester = context()
    page = sign_in(requester, pages, REQUESTER, "/console/approvals")
    page.locator(f'tr[data-approval-id="{own_id}"]').wait_for(state="visible", timeout=WAIT_MS)
    response = goto(page, f"/console/approvals/{own_id}")
    pages.full(page, response, "approval (own request)", "Approval", ["Approvals", "Sessions"], name="approval-own")
    body = page.locator("body").inner_text()
    check("you asked for this approval" in body, "the requester is told 'you asked for this approval'", body)
    check(page.get_by_role("button", name="Grant").count() == 0, "the requester sees no Grant button")
    check(page.get_by_role("button", name="Deny").count() == 0, "the requester sees no Deny button")
    csrf = page.locator('input[type=hidden][name="csrf"]').first.get_attribute("value")
    check(bool(csrf), "the sign-out form's csrf is there")
    answer = requester.request.post(URL + f"/console/approvals/{own_id}/grant", form={"comment": "mine", "csrf": csrf}, max_redirects=0)
    check(answer.status == 403, "the requester's own grant POST (with a valid csrf) is refused 403", f"{answer.status} {answer.text()[:300]}")
    check("cross-site request refused" not in answer.text(), "refused as their own, not by the CSRF check", answer.text()[:300])
    check(approval_state(own_id) == "pending", "the own request stays pending")
    ok(f"{REQUESTER_NAME} cannot approve their own request ({own_id}): no buttons, POST 403")

    # A forged cross-site form post, with the approver's cookie in the browser.
    target = f"{URL}/console/approvals/{own_id}/grant"
    attacker = Attacker(target)
    try:
        for host, cookie_sent in (("127.0.0.1", True), ("localhost", False)):
            victim = pages.watch(approver.new_page())
            with victim.expect_response(lambda r: r.url == target and r.request.method == "POST", timeout=WAIT_MS) as answer:
                victim.goto(f"http://{host}:{attacker.port}/")
            got = answer.value
            sent = got.request.all_headers()
            had_cookie = "rein_console=" in sent.get("cookie", "")
            if cookie_sent:
                # Same site (another port of 127.0.0.1): SameSite=Strict
                # lets the cookie through; Sec-Fetch-Site/Origin must stop it.
                check(had_cookie, "the same-site forged post carries the victim's cookie", sent)
                check(got.status == 403, "the forged post (same site, other origin) is refused 403", got.status)
                victim.wait_for_load_state("load")
                check("cross-site request refused" in victim.locator("body").inner_text(), "it says 'cross-site request refused'")
            else:
                # Cross-site: SameSite=Strict withholds the cookie.
                check(not had_cookie, "the cross-site forged post carries no cookie", sent)
                check(got.status in (401, 403), "the forged post (cross-site) is refused", got.status)
            check(approval_state(own_id) == "pending", "the approval stays pending after a forged post")
            victim.close()
            ok(f"a forged form post from http://{host}:{attacker.port} is refused ({got.status}); the approval stays pending")
    finally:
        attacker.close()
    # The other approver may decide it: the page shows them the buttons.
    page = pages.watch(approver.new_page())
    goto(page, f"/console/approvals/{own_id}")
    check(page.get_by_role("button", name="Grant").count() == 1, "another approver sees Grant on it")
    page.close()

    # Phone width: every page, no horizontal scroll.
    phone_admin = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = sign_in(phone_admin, pages, ADMIN, "/console/audit")
    phone_pages = [
        ("/console/approvals", "approvals"),
        (f"/console/approvals/{own_id}", "approval"),
        ("/console/audit", "audit"),
        (f"/console/audit/{retry['seq']}", "audit-record"),
        ("/console/sessions", "sessions"),
        (f"/console/sessions/{urllib.parse.quote(session, safe='')}", "session"),
        ("/console/policy", "policy"),
        ("/console/policy/playground", "playground"),
    ]
    for path, name in phone_pages:
        response = goto(page, path)
        check(response.status == 200, f"phone: {path} answers 200", response.status)
        pages.no_horizontal_scroll(page, f"phone {path}")
        pages.axe(page, f"phone {path}")
        pages.shot(page, f"phone-{name}")
    phone_anon = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = pages.watch(phone_anon.new_page())
    goto(page, "/console/login")
    pages.no_horizontal_scroll(page, "phone /console/login")
    pages.shot(page, "phone-login")
    ok(f"phone width ({PHONE['width']}x{PHONE['height']}): {len(phone_pages) + 1} pages without horizontal scroll, axe clean")

    # Sign out: the cookie goes, the pages send to sign-in again.
    page = pages.watch(approver.new_page())
    goto(page, "/console/approvals")
    with page.expect_navigation(wait_until="load"):
        page.get_by_role("button", name="Sign out").click()
    check(not [c for c in approver.cookies(URL + "/console") if c["name"] == "rein_console"], "sign-out removes the cookie", approver.cookies(URL + "/console"))
    redirected_to_login(page, "/console/approvals", "after sign-out")
    ok("sign out")

    check(not pages.csp_errors, "no page broke its Content-Security-Policy", "\n".join(pages.csp_errors))
    ok("no Content-Security-Policy violation on any page")
    want = {"login", "approvals", "approval", "audit", "audit-record", "session", "policy", "playground"}
    check(want <= pages.shot_names, "a screenshot of each page", sorted(want - pages.shot_names))
    print(f"screenshots: {len(pages.shot_names)} in {SHOTS}")


def main():
    started = time.monotonic()
    with sync_playwright() as p:
        # launch() gives the browser a fresh, temporary user-data-dir.
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        print(f"chromium {browser.version}", flush=True)
        try:
            run(browser)
        except Exception as e:
            print(f"not ok {checks + 1} - {e}", flush=True)
            if not isinstance(e, Failed):
                traceback.print_exc()
            for c, context in enumerate(browser.contexts):
                for i, page in enumerate(context.pages):
                    try:
                        path = os.path.join(SHOTS, f"failed-{c}-{i}.png")
                        page.screenshot(path=path, full_page=True)
                        print(f"--- open page {page.url} (screenshot {path}):\n{page.locator('body').inner_text()[:3000]}")
                    except Exception:
                        pass
            return 1
        finally:
            browser.close()
    print(f"console_test: all {checks} checks passed in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
