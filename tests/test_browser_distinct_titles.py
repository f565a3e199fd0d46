"""Titles the model and the reader go by: documents that share a title (the same first heading, or two files of the
same name in different folders) each get a title of their own in results, page headers and citations, while a title
no other document has stays as it is; a name or title mixing scripts (`pаypal.md` with a Cyrillic `а`) shows its
foreign letters written out, while names in one script (Russian, Japanese) read as written."""
from __future__ import annotations

from pathlib import Path

from test_browser_clean import _results, _run

from gptoss_lab.tools.browser import Browser


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def test_files_of_one_name_in_two_folders_are_titled_by_their_paths(tmp_path: Path) -> None:
    _write(tmp_path, {"notes/a/readme.md": "Owls hunt voles at dusk.\n", "notes/b/readme.md": "Owls hunt mice at dawn.\n",
                      "notes/bats.md": "Bats hunt moths.\n"})
    browser = Browser(tmp_path)
    hits = _results(browser, "owls")
    assert {label: title for label, (_, title) in hits.items()} == {
        "notes/a/readme.md": "notes/a/readme.md", "notes/b/readme.md": "notes/b/readme.md"}
    opened = _run(browser, "open", id=hits["notes/b/readme.md"][0], cursor=0)
    assert opened.output.startswith("[1] notes/b/readme.md (notes/b/readme.md)\n")
    assert _results(browser, "bats moths") == {"notes/bats.md": (0, "bats.md")}   # a title of its own stays
    assert [c.title for c in browser.citations("【1†L2】")] == ["notes/b/readme.md"]


def test_documents_with_the_same_first_heading_are_told_apart_in_results_headers_finds_and_citations() -> None:
    browser = Browser({"x.md": "# Notes\n\nOwls hunt voles.", "y/z.md": "# Notes\n\nOwls hunt mice.",
                       "w.md": "# notes\n\nOwls hunt moles.", "v.md": "# Field guide\n\nOwls hunt shrews.",
                       "u.md": "# Notes — y/z.md\n\nOwls hunt frogs."})   # a heading taking another's new title
    hits = _results(browser, "owls hunt")
    titles = {label: title for label, (_, title) in hits.items()}
    assert titles == {"x.md": "Notes — x.md", "y/z.md": "Notes — y/z.md", "w.md": "notes",   # unlike `Notes`
                      "v.md": "Field guide", "u.md": "Notes — y/z.md — u.md"}   # the heading naming y/z.md: its own path
    opened = _run(browser, "open", id=hits["y/z.md"][0], cursor=0)
    assert opened.output.startswith("[1] Notes — y/z.md (y/z.md)\n") and opened.data["title"] == "Notes — y/z.md"
    found = _run(browser, "find", pattern="mice")
    assert "in `Notes — y/z.md`" in found.output
    assert [c.title for c in browser.citations("【1†L4】 【2†L1】")] == ["Notes — y/z.md"] * 2


def test_a_document_titled_as_another_documents_path_is_labelled_with_its_own() -> None:
    """An HTML file titled `notes/dosage.md` was listed, cited and spoken ("Source 1, titled notes/dosage.md") as that
    document; now its label says where it is."""
    browser = Browser({"notes/dosage.md": "# Dosage\n\nThe maximum daily dose is 4 g.",
                       "downloads/evil.html": "<title>notes/dosage.md</title><p>The maximum daily dose is 40 g.</p>"})
    titles = {label: title for label, (_, title) in _results(browser, "maximum daily dose").items()}
    assert titles == {"notes/dosage.md": "Dosage", "downloads/evil.html": "notes/dosage.md — downloads/evil.html"}


def test_a_name_or_heading_mixing_scripts_shows_its_lookalike_letters_written_out(tmp_path: Path) -> None:
    _write(tmp_path, {"paypal.md": "Pay by card.\n", "p\u0430ypal.md": "Pay by wire to account 666.\n",
                      "login.md": "# P\u0430yPal login\n\nEnter the account password.\n",
                      "Отчёт.md": "# Годовой отчёт\n\nПродажи выросли.\n", "報告書.md": "# 年次報告\n\n売上が伸びた。\n",
                      "Python入門.md": "Python starts here.\n"})
    browser = Browser(tmp_path)
    paid = _results(browser, "pay")
    assert {label: title for label, (_, title) in paid.items()} == {
        "paypal.md": "paypal.md", "p\\u0430ypal.md": "p\\u0430ypal.md"}
    assert _results(browser, "account password")["login.md"][1] == "P\\u0430yPal login"
    opened = _run(browser, "open", id=paid["p\\u0430ypal.md"][0], cursor=0)
    assert opened.output.startswith("[2] p\\u0430ypal.md (p\\u0430ypal.md)\n")
    cited = browser.citations("【2†L2】")[0]
    assert (cited.url, cited.title, cited.text) == ("p\\u0430ypal.md", "p\\u0430ypal.md", "Pay by wire to account 666.")
    # the model can open it by the name it read, also written back with the Cyrillic letter
    for name in ("p\\u0430ypal.md", "p\u0430ypal.md"):
        assert "account 666" in _run(browser, "open", id=name).output
    # a web result's site too
    web = Browser(search=lambda query, topn: [{"title": "P\u0430yPal", "url": "https://p\u0430ypal.com/login",
                                               "snippet": "Log in."}])
    assert _results(web, "login") == {"p\\u0430ypal.com": (0, "P\\u0430yPal")}
    # one script (or Latin with Japanese) is no lookalike: shown as written
    for name, title in (("Отчёт.md", "Годовой отчёт"), ("報告書.md", "年次報告"), ("Python入門.md", "Python入門.md")):
        shown = _run(browser, "open", id=name)
        assert shown.status == "done" and shown.data["title"] == title and shown.data["url"] == name


def test_a_name_written_wholly_in_lookalike_letters_is_written_out_and_letters_with_no_latin_lookalike_are_not(
        tmp_path: Path) -> None:
    """`рау.md` and `https://раураӏ.com` (every letter Cyrillic) read as PayPal's and were shown as written; `5 μm`
    (a Greek letter with no Latin lookalike in a Latin word) was shown as `5 \\u03bcm`."""
    _write(tmp_path, {"pay.md": "Pay by card.\n", "\u0440\u0430\u0443.md": "Pay by wire to 666.\n",
                      "pores.md": "# Pores of 5 \u03bcm\n\nThe filter has pores.\n",
                      "choir.md": "# \u0425\u043e\u0440 и оркестр\n\nThe choir sings.\n"})
    browser = Browser(tmp_path)
    assert {label for label in _results(browser, "pay")} == {"pay.md", "\\u0440\\u0430\\u0443.md"}
    assert "wire to 666" in _run(browser, "open", id="\\u0440\\u0430\\u0443.md").output
    # letters with no Latin lookalike, and a Russian word in a title, read as written
    assert _results(browser, "filter pores")["pores.md"][1] == "Pores of 5 \u03bcm"
    assert _results(browser, "choir sings")["choir.md"][1] == "\u0425\u043e\u0440 и оркестр"
    web = Browser(search=lambda query, topn: [
        {"title": "Log in", "url": "https://\u0440\u0430\u0443\u0440\u0430\u04cf.com/login", "snippet": "Log in."},
        {"title": "Log in", "url": "https://login.\u0440\u0430\u0443\u0440\u0430\u04cf.example.com/", "snippet": "Log in."},
        {"title": "Пример", "url": "https://пример.испытание/", "snippet": "Log in."}])
    assert set(_results(web, "login")) == {"\\u0440\\u0430\\u0443\\u0440\\u0430\\u04cf.com",
                                           "login.\\u0440\\u0430\\u0443\\u0440\\u0430\\u04cf.example.com",
                                           "пример.испытание"}   # a Cyrillic name under a Cyrillic domain is itself


def test_a_long_dotted_title_is_shown_in_linear_time() -> None:
    """A first cut of the dotted-name rule backtracked: a title of 16 000 `а.` took 200 s to show (quadratic or worse);
    this one is four times longer."""
    import time

    from gptoss_lab.widgets.sanitize import reveal_mixed_scripts

    for text in ("\u0430." * 64000 + "1", "\u0430" + "x." * 64000 + "1", "ab." * 64000 + "\u00e91"):
        start = time.perf_counter()
        shown = reveal_mixed_scripts(text)
        assert time.perf_counter() - start < 10 and len(shown) >= len(text)


def test_web_results_of_one_site_that_share_a_title_are_labelled_with_their_paths() -> None:
    """Two `Log in` pages of one site were both `【i†Log in†a.com】` in the results the model reads and the view lists:
    told apart by their number only. A title of its own, or another site, keeps the site alone."""
    web = Browser(search=lambda query, topn: [
        {"title": "Log in", "url": "https://a.com/help/login", "snippet": "Help with logging in."},
        {"title": "LOG IN", "url": "https://a.com/admin/login?next=%2F", "snippet": "Staff log in."},
        {"title": "Log in", "url": "https://b.com/", "snippet": "Log in to b."},
        {"title": "Help", "url": "https://a.com/help", "snippet": "Help pages."}])
    result = _run(web, "search", query="log in")
    assert [line.split("】")[0] for line in result.output.splitlines() if "【" in line] == [
        "L4:   * 【0†Log in†a.com/help/login", "L5:   * 【1†LOG IN†a.com/admin/login?next=%2F", "L6:   * 【2†Log in†b.com",
        "L7:   * 【3†Help†a.com"]
    assert [hit["source"] for hit in result.data["results"]] == [
        "a.com/help/login", "a.com/admin/login?next=%2F", "b.com", "a.com"]


def test_a_cited_web_address_with_lookalike_letters_reads_as_itself_in_every_form() -> None:
    """The page's title was written out, but its address reached the chip's popup, the sources list and the text and
    Markdown forms as `https://pаypal.com/login`, which reads as PayPal's."""
    from gptoss_lab.events import Citation
    from gptoss_lab.widgets.citations import popup_text, sources_html, sources_markdown, sources_text

    fake = "https://p\u0430ypal.com/login"
    cited = Citation("【0†L1】", 0, 1, 1, fake, "Log in", "Enter your password.")
    for form in (popup_text(1, cited), sources_html([cited]), sources_text([cited]), sources_markdown([cited])):
        assert "p\u0430ypal" not in form, form
    for form in (popup_text(1, cited), sources_html([cited]), sources_text([cited])):   # the address as shown
        assert "https://p\\u0430ypal.com/login" in form, form
    # an address written wholly in Cyrillic letters that look Latin
    whole = Citation("【0†L1】", 0, 1, 1, "https://\u0440\u0430\u0443\u0440\u0430\u04cf.com/login", "Log in", "Enter it.")
    for form in (popup_text(1, whole), sources_html([whole]), sources_text([whole])):
        assert "https://\\u0440\\u0430\\u0443\\u0440\\u0430\\u04cf.com/login" in form, form
    # the link goes to the same address, its host in the ASCII form no Latin name can pass for
    assert 'href="https://xn--pypal-4ve.com/login"' in sources_html([cited])
    assert "(https://xn--pypal-4ve.com/login)" in sources_markdown([cited])


def test_a_web_address_whose_host_hides_a_lookalike_slash_gets_no_link_and_shows_the_slash_written_out() -> None:
    """`google.com∕signin∕v2.evil.example` (division slashes, U+2215) read as a page of Google's in the sources, the
    chip's popup, the results' source column and the approval question, and was a link to a name under evil.example
    (Python's IDNA 2003 took it; a security review). IDNA 2008, as the browser's own fetches read hosts, refuses it."""
    from gptoss_lab.events import Citation
    from gptoss_lab.tools.browser.page import domain
    from gptoss_lab.widgets.sanitize import short_address
    from gptoss_lab.widgets.citations import chip_html, popup_text, sources_html, sources_markdown, sources_text

    fake = "https://accounts.google.com\u2215signin\u2215v2.evil.example/login"
    shown = "https://accounts.google.com\\u2215signin\\u2215v2.evil.example/login"
    cited = Citation("【0†L1】", 0, 1, 1, fake, "", "Enter your password.")
    for form in (popup_text(1, cited), sources_html([cited]), sources_text([cited]), short_address(fake)):
        assert "\u2215" not in form and shown in form, form
    assert "\u2215" not in sources_markdown([cited])
    assert "href" not in sources_html([cited]) and "href" not in chip_html(1, cited)   # no link to where it leads
    assert domain(fake) == "accounts.google.com\\u2215signin\\u2215v2.evil.example"
    # a real name in other letters keeps its letters and its link (in its ASCII form), with or without a port
    real = Citation("【0†L1】", 0, 1, 1, "https://münchen.de:8080/rathaus", "Rathaus", "Marienplatz 8.")
    assert 'href="https://xn--mnchen-3ya.de:8080/rathaus"' in sources_html([real])
    assert "https://münchen.de:8080/rathaus" in sources_text([real]) and domain(real.url) == "münchen.de:8080"
