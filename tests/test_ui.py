"""The search page (api/ui/) end to end: the system's headless Chromium, driven by Playwright,
against the real server on a real port. No browser download: Debian's `chromium` package
(.ci/run installs it when missing).

EMBEDSEARCH_SCREENSHOT=path makes test_add_text_then_search_it save the page with results
there (docs/search-page.png in the README is taken that way).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    FilePayload,
    Page,
    Request,
    Route,
    expect,
    sync_playwright,
)
from pydantic import SecretStr

from embedsearch.api.app import create_app
from embedsearch.config import Settings
from embedsearch.embedders.local import LocalEmbedder
from embedsearch.store.embedded import EmbeddedPostgres
from tests.pdfs import write_text_pdf
from tests.raw_embeddings import DIMENSIONS, create_raw_app
from tests.servers import LiveServer, create_database, free_port, live_server

# `make test` installs it (make browser); without it these tests fail, they do not skip.
CHROMIUM = shutil.which("chromium")

KEY = "k1"
XSS = "<img src=x onerror=alert(1)>"
# Raw (not unit) vectors from tests/raw_embeddings.py: lengths 0.2 to 5, so cosine, L2 and
# inner product rank these differently (unit vectors would make all three agree).
RAW_TEXTS = [f"note {i} about {topic}" for i, topic in enumerate("abcdefghij")]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None, "no system chromium: `make browser` (apt-get install chromium)"
    with sync_playwright() as playwright:
        # --no-sandbox: CI and this machine run as root, where Chromium's sandbox cannot start.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def _settings(embedded_pg: EmbeddedPostgres, data_dir: Path, raw_url: str) -> Settings:
    return Settings(
        database_url=create_database(embedded_pg.url),
        data_dir=data_dir,
        openai_base_url=raw_url + "/v1",
        openai_api_key="test-key",
    )


@pytest.fixture(scope="module")
def raw_server() -> Iterator[LiveServer]:
    with live_server(create_raw_app()) as live:
        yield live


@pytest.fixture(scope="module")
def ui_server(
    embedded_pg: EmbeddedPostgres,
    local_embedder: LocalEmbedder,
    raw_server: LiveServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    settings = _settings(embedded_pg, tmp_path_factory.mktemp("ui"), raw_server.url)
    with live_server(create_app(settings, embedder=local_embedder)) as live:
        yield live


@pytest.fixture(scope="module")
def auth_server(
    embedded_pg: EmbeddedPostgres,
    local_embedder: LocalEmbedder,
    raw_server: LiveServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    settings = _settings(embedded_pg, tmp_path_factory.mktemp("ui-auth"), raw_server.url)
    keyed = settings.model_copy(update={"api_keys": SecretStr(KEY)})
    with live_server(create_app(keyed, embedder=local_embedder)) as live:
        yield live


@dataclass
class Watched:
    """A page and what it did: console errors, uncaught exceptions, dialogs, every request."""

    page: Page
    origin: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def foreign_requests(self) -> list[str]:
        return [r.url for r in self.requests if not r.url.startswith(self.origin + "/")]


def watch(browser: Browser, origin: str, width: int = 1280, height: int = 900) -> Watched:
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    watched = Watched(page, origin)
    page.on("console", watched.on_console)
    page.on("pageerror", lambda error: watched.page_errors.append(str(error)))
    page.on("request", lambda request: watched.requests.append(request))

    def on_dialog(dialog: Dialog) -> None:
        watched.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return watched


@pytest.fixture
def ui(browser: Browser, ui_server: LiveServer) -> Iterator[Watched]:
    watched = watch(browser, ui_server.url)
    yield watched
    # Every test: the page never talked to any host but its own server.
    assert watched.foreign_requests() == []
    assert watched.page_errors == []
    watched.page.context.close()


def open_page(watched: Watched) -> Page:
    page = watched.page
    page.goto(watched.origin + "/")
    # Loaded: the collection select is filled from GET /collections.
    expect(page.get_by_label("Collection", exact=True).locator("option").first).to_be_attached()
    return page


def add_text(page: Page, collection: str, document_id: str, text: str) -> None:
    page.get_by_label("Collection (existing or new)").fill(collection)
    page.get_by_label("Document id").fill(document_id)
    page.get_by_label("Text", exact=True).fill(text)
    page.get_by_role("button", name="Add text").click()
    expect(page.locator("#add-result")).to_contain_text("Stored 1 document(s)")


def result_ids(page: Page, label: str = "Results") -> list[str]:
    items = page.get_by_role("list", name=label, exact=True).locator(".chunk-id")
    return items.all_text_contents()


def search(page: Page, query: str, **choices: str) -> None:
    for label, value in choices.items():
        page.get_by_label(label, exact=True).select_option(value)
    page.get_by_label("Query").fill(query)
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#results-section")).to_have_attribute("aria-busy", "false")


def test_page_loads_without_errors_and_without_a_key(ui: Watched, browser: Browser) -> None:
    page = open_page(ui)
    expect(page.get_by_role("heading", name="Search", exact=True)).to_be_visible()
    for label in ("Query", "Mode", "Distance", "Limit", "Text", "Document id"):
        expect(page.get_by_label(label, exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Compare metrics")).to_be_visible()
    expect(page.get_by_role("list", name="Results")).to_be_attached()
    expect(page.get_by_role("status")).to_be_attached()
    # The collections view: the default collection with its model and index health.
    card = page.get_by_role("article", name="Collection default")
    expect(card).to_contain_text("all-MiniLM-L6-v2")
    expect(card).to_contain_text("384")
    expect(card).to_contain_text("hnsw")
    expect(page.get_by_label("API key")).to_be_hidden()  # auth is off here
    # Keyboard: "/" jumps to the query from elsewhere on the page.
    page.get_by_role("button", name="Refresh").focus()
    page.keyboard.press("/")
    expect(page.get_by_label("Query")).to_be_focused()
    assert ui.console_errors == []
    assert {r.url.removeprefix(ui.origin) for r in ui.requests} >= {
        "/",
        "/ui/app.js",
        "/ui/api.js",
        "/ui/dom.js",
        "/ui/style.css",
        "/collections",
    }
    # The files are public and carry a CSP that allows this origin only.
    index = httpx.get(ui.origin + "/")
    assert "connect-src 'self'" in index.headers["content-security-policy"]
    assert httpx.get(ui.origin + "/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(ui.origin + "/ui/nope.js").status_code == 404

    # Phone width: one column, nothing wider than the screen.
    phone = watch(browser, ui.origin, width=390, height=844)
    open_page(phone)
    overflow = phone.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    assert phone.console_errors == [] and phone.foreign_requests() == []
    phone.page.context.close()


def test_add_text_then_search_it(ui: Watched) -> None:
    page = open_page(ui)
    add_text(
        page,
        "notes",
        "pgvector-notes",
        f"HNSW indexes make pgvector searches fast. Stored as text, never run: {XSS}",
    )
    add_text(page, "notes", "cooking", "Slow cooked tomato sauce needs garlic and basil.")
    # Metadata is untrusted too (set through the API here).
    httpx.post(
        ui.origin + "/documents",
        json={
            "documentId": "meta",
            "collection": "notes",
            "text": "Vector indexes trade recall for speed.",
            "metadata": {"note": "<script>window.pwned = 1</script>", "lang": "en"},
        },
    ).raise_for_status()
    expect(page.get_by_role("article", name="Collection notes")).to_contain_text("Chunks2")
    page.get_by_role("button", name="Refresh").click()
    expect(page.get_by_role("article", name="Collection notes")).to_contain_text("Chunks3")

    page.get_by_label("Collection", exact=True).select_option("notes")
    page.get_by_label("Query").fill("pgvector index speed")
    page.get_by_label("Query").press("Enter")  # Enter searches
    expect(page.locator("#results-section")).to_have_attribute("aria-busy", "false")
    results = page.get_by_role("list", name="Results")
    expect(results.locator("li")).to_have_count(3)
    first = results.locator("li", has=page.get_by_text("pgvector-notes#0", exact=True))
    expect(first.locator(".rank")).to_have_text(re.compile("#[12]"))
    expect(first.locator(".document-id")).to_have_text("pgvector-notes")
    expect(first).to_contain_text("distance, smaller is closer")
    assert "pgvector" in first.locator("mark").all_text_contents()
    expect(page.locator("#results-summary")).to_contain_text(re.compile(r"server \d+(\.\d)? ms"))
    # HTML in chunks and metadata shows as text and never runs.
    expect(first.locator(".text")).to_contain_text(XSS)
    assert results.locator("img, script").count() == 0
    meta = results.locator("li", has_text="trade recall")
    expect(meta.locator(".metadata")).to_contain_text("<script>window.pwned = 1</script>")
    assert page.evaluate("window.pwned") is None
    assert ui.dialogs == []

    if target := os.environ.get("EMBEDSEARCH_SCREENSHOT"):
        page.set_viewport_size({"width": 1280, "height": 1000})
        page.screenshot(path=target, full_page=False)

    search(page, "pgvector", Mode="lexical")
    expect(results.locator("li").first).to_contain_text("relevance")
    expect(results.locator("li").first.locator("mark")).to_have_text(["pgvector"])

    search(page, "zzzzqqq", Mode="lexical")
    expect(page.locator("#results-summary")).to_contain_text("No results in notes")
    expect(results.locator("li")).to_have_count(0)
    assert ui.console_errors == []


def test_a_pdf_is_uploaded_stored_and_found(ui: Watched, tmp_path: Path) -> None:
    """The page has the server read the PDF's text layer (POST /text/pdf), then stores it."""
    pdf = tmp_path / "tides.pdf"
    write_text_pdf(pdf, ["Tidal energy turns the rise and fall of the sea into power."])
    page = open_page(ui)
    page.get_by_label("Collection (existing or new)").fill("papers")
    page.get_by_label("Files (.txt, .md, .html, .pdf)").set_input_files(
        [FilePayload(name="tides.pdf", mimeType="application/pdf", buffer=pdf.read_bytes())]
    )
    page.get_by_role("button", name="Add text").click()
    expect(page.locator("#add-result")).to_contain_text("Stored 1 document(s)")
    page.get_by_role("button", name="Refresh").click()
    page.get_by_label("Collection", exact=True).select_option("papers")
    search(page, "tidal power", Mode="lexical")
    expect(page.get_by_role("list", name="Results").locator("li")).to_have_count(1)
    assert result_ids(page) == ["tides.pdf#0"]


def test_switching_the_metric_changes_the_ranking(ui: Watched, raw_server: LiveServer) -> None:
    created = httpx.post(
        ui.origin + "/collections",
        json={
            "name": "raw",
            "embedder": "openai:toy-raw",
            "dimensions": DIMENSIONS,
            "normalize": False,
        },
    )
    assert created.status_code == 201, created.text
    page = open_page(ui)
    for i, text in enumerate(RAW_TEXTS[:-1]):
        httpx.post(
            ui.origin + "/documents",
            json={"documentId": f"n{i}", "collection": "raw", "text": text},
        ).raise_for_status()
    # The last one arrives as an uploaded file, with progress.
    page.get_by_label("Collection (existing or new)").fill("raw")
    html = f"<p>{RAW_TEXTS[-1]}</p><script>x()</script>".encode()
    files = [
        FilePayload(name="n9.html", mimeType="text/html", buffer=html),
    ]
    page.get_by_label("Files (.txt, .md, .html, .pdf)").set_input_files(files)
    page.get_by_role("button", name="Add text").click()
    expect(page.locator("#add-result")).to_contain_text("Stored 1 document(s)")
    assert page.locator("#add-progress").evaluate("p => p.value === p.max")
    card = page.get_by_role("article", name="Collection raw")
    expect(card).to_contain_text("Chunks10")
    expect(card).to_contain_text("raw (as the model gives them)")

    page.get_by_label("Collection", exact=True).select_option("raw")
    page.get_by_label("Limit").fill("10")
    search(page, "note about", Distance="cosine")
    cosine = result_ids(page)
    assert len(cosine) == 10 and "n9.html#0" in cosine
    search(page, "note about", Distance="inner_product")
    inner = result_ids(page)
    search(page, "note about", Distance="l2")
    l2 = result_ids(page)
    assert sorted(cosine) == sorted(inner) == sorted(l2)
    assert cosine != inner and cosine != l2

    page.get_by_role("button", name="Compare metrics").click()
    compare = page.get_by_role("region", name="Compare metrics")
    expect(compare.locator("#compare-summary")).to_contain_text("Rankings differ")
    assert result_ids(page, "cosine results") == cosine
    assert result_ids(page, "inner product results") == inner
    assert result_ids(page, "L2 results") == l2
    expect(compare.get_by_text(re.compile("moved: cosine has it at #")).first).to_be_visible()
    assert ui.console_errors == []


def test_bad_input_shows_the_api_message_next_to_its_field(ui: Watched) -> None:
    page = open_page(ui)
    page.get_by_label("Query").fill("anything")
    page.get_by_label("Limit").fill("0")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#limit-error")).to_contain_text("limit: Input should be greater than")
    expect(page.get_by_label("Limit")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Limit").fill("5")
    page.get_by_label("Query").fill("")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#query-error")).to_contain_text("query")
    expect(page.locator("#limit-error")).to_be_hidden()  # the old message is gone

    page.get_by_label("Collection (existing or new)").fill("no spaces allowed")
    page.get_by_label("Text", exact=True).fill("some text")
    page.get_by_role("button", name="Add text").click()
    expect(page.locator("#add-collection-error")).not_to_be_empty()


def test_api_failure_shows_an_error_state(ui: Watched) -> None:
    page = open_page(ui)
    page.route("**/search", lambda route: route.abort())
    search_button = page.get_by_role("button", name="Search", exact=True)
    page.get_by_label("Query").fill("anything")
    search_button.click()
    expect(page.get_by_role("alert")).to_contain_text("Cannot reach the server")
    expect(page.locator("#results-summary")).to_contain_text("the search failed")
    page.unroute("**/search")
    search_button.click()
    expect(page.get_by_role("alert")).to_be_hidden()  # recovered


def test_server_down_shows_an_error_state(browser: Browser) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    watched = watch(browser, dead)
    page = watched.page
    # The page itself comes from a live server's files, then its API goes away: serve the
    # files from a route, as a browser cache would.
    ui_dir = Path(__file__).resolve().parent.parent / "src/embedsearch/api/ui"

    def from_disk(route: Route) -> None:
        path = route.request.url.removeprefix(dead)
        if path == "/" or path.startswith("/ui/"):
            name = "index.html" if path == "/" else path.removeprefix("/ui/")
            kind = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
            mime = kind.get(name.rsplit(".", 1)[-1], "text/html")
            route.fulfill(body=(ui_dir / name).read_bytes(), content_type=mime)
        else:
            route.continue_()

    page.route(dead + "/**", from_disk)
    page.goto(dead + "/")
    expect(page.get_by_role("alert")).to_contain_text("Cannot reach the server")
    expect(page.locator("#collections")).to_contain_text("could not be loaded")
    assert watched.foreign_requests() == []
    page.context.close()


def test_auth_401_then_a_key(browser: Browser, auth_server: LiveServer) -> None:
    assert httpx.get(auth_server.url + "/").status_code == 200  # the page needs no key
    assert httpx.get(auth_server.url + "/ui/app.js").status_code == 200
    assert httpx.get(auth_server.url + "/collections").status_code == 401  # the data does
    assert httpx.post(auth_server.url + "/ui/app.js").status_code == 401  # /ui/ is GET only
    httpx.post(
        auth_server.url + "/documents",
        json={"documentId": "secret", "text": "Keys guard the collections."},
        headers={"Authorization": f"Bearer {KEY}"},
    ).raise_for_status()
    watched = watch(browser, auth_server.url)
    page = watched.page
    page.goto(auth_server.url + "/")
    key_field = page.get_by_label("API key")
    expect(key_field).to_be_visible()
    expect(page.locator("#key-help")).to_contain_text("needs an API key")
    page.get_by_label("Query").fill("keys")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#key-help")).to_contain_text("missing API key")

    key_field.fill("wrong")
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#key-help")).to_contain_text("not accepted")
    key_field.fill(KEY)
    page.get_by_role("button", name="Use key").click()
    expect(page.get_by_role("status")).to_have_text("Key accepted.")
    assert page.evaluate("sessionStorage.getItem('embedsearch.apiKey')") == KEY
    search(page, "who guards the collections")
    expect(page.get_by_role("list", name="Results").locator(".chunk-id")).to_have_text(["secret#0"])
    searches = [r for r in watched.requests if r.url.endswith("/search")]
    assert searches[-1].headers["authorization"] == f"Bearer {KEY}"
    # Kept for the tab: a reload still has it.
    page.reload()
    search(page, "who guards the collections")
    expect(page.get_by_role("list", name="Results").locator("li")).to_have_count(1)
    assert watched.foreign_requests() == [] and watched.page_errors == []
    page.context.close()
