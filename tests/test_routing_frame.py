"""Routing.to_frame at corpus scale: a token's text and label, repeated on each of its layers × k rows, are
categoricals (they took ~120 bytes a row as text), and the frame still reads as before."""
from __future__ import annotations

import numpy as np
import pandas as pd

from gptoss_lab import harmony
from gptoss_lab.routing import Routing


def _corpus(tokens: int = 3000, layers: int = 24, k: int = 4) -> Routing:
    """gpt-oss-20b's shape (24 layers, top-4 of 32) over real Harmony text: a conversation repeated."""
    ids = harmony.render([harmony.system_message("low", date="2025-01-01"),
                          harmony.user_message("What is 37 * 12? Show the steps, then the answer."),
                          harmony.assistant_message("37 * 12 = 37 * 10 + 37 * 2 = 370 + 74 = 444.", "final")],
                         keep_analysis_from=0)
    ids = (ids * (tokens // len(ids) + 1))[:tokens]
    rng = np.random.default_rng(0)
    return Routing(ids, rng.integers(0, 32, (tokens, layers, k)), rng.random((tokens, layers, k), np.float32),
                   harmony.label_tokens(ids), num_experts=32)


def test_the_frame_of_a_corpus_takes_a_few_kilobytes_a_token():
    frame = _corpus().to_frame()
    per_token = frame.memory_usage(deep=True).sum() / 3000
    assert per_token < 3000  # 96 rows a token: it was 15,000 bytes (120 a row for the text and label alone)


def test_the_frame_reads_as_before():
    r = _corpus(200, layers=3, k=2)
    frame = r.to_frame()
    assert list(frame.columns) == ["position", "token", "text", "label", "layer", "rank", "expert", "weight"]
    final = frame[(frame.label == "final") & (frame.layer == 2) & (frame["rank"] == 1)]
    tokens = np.flatnonzero(r.mask("final"))
    assert final.position.tolist() == tokens.tolist() and final.text.tolist() == [r.strings[t] for t in tokens]
    assert final.expert.tolist() == r.experts[tokens, 2, 1].tolist()
    assert frame[frame.text == "<|start|>"].token.eq(harmony.START).all() and frame[frame.label == "nothing"].empty
    assert sorted(frame.label.value_counts().index) == sorted(set(r.labels))  # only the labels present
    assert frame.sort_values("text", kind="stable").text.tolist() == sorted(frame.text.tolist())
    assert [(int(t), str(s)) for t, s in zip(frame.token, frame.text)][:2] == [(r.tokens[0], r.strings[0])] * 2
    assert len(Routing(num_experts=4).to_frame()) == 0


def test_an_empty_slot_is_no_row_of_the_frame():
    """A slot left empty (`disable(..., replace=False)`: expert -1, weight 0) was a row, so grouping the frame by expert
    counted an "expert -1" that no text view shows; the frame's rows are the picks, as `load()` counts them."""
    experts = np.array([[[0, 1], [2, -1]], [[3, 2], [-1, -1]]])
    r = Routing([5, 6], experts, np.where(experts >= 0, 0.5, 0.0), num_experts=4)
    frame = r.to_frame()
    assert frame.groupby("expert").size().to_dict() == {0: 1, 1: 1, 2: 2, 3: 1}
    for layer in range(2):
        counted = frame[frame.layer == layer].expert.value_counts()
        assert counted.reindex(range(4), fill_value=0).tolist() == r.load().counts[layer].tolist()
    assert frame[["position", "layer", "rank"]].values.tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 0, 1]]
    assert frame.text.tolist() == [r.strings[0]] * 3 + [r.strings[1]] * 2 and (frame.weight == 0.5).all()


TEX = "$\\color{red}{x}$"


def _html(value: object) -> str:
    """The text/html a notebook gets for `value`, from IPython's own display formatter."""
    from IPython.core.formatters import DisplayFormatter

    return DisplayFormatter().format(value)[0]["text/html"]


def test_every_frame_of_routing_text_is_shown_out_of_mathjax():
    """to_frame(), an Effect's changed_tokens(), an expert card's tables and any slice or group of an analysis table
    were plain DataFrames: a label "$\\color{red}{x}$" in them was typeset by the notebook's MathJax (a red x)."""
    from types import SimpleNamespace

    from gptoss_lab.routing import Effect, disable
    from gptoss_lab.widgets.sanitize import NO_TYPESETTING

    ids = np.array([[[0, 1]], [[1, 2]], [[2, 0]]])
    r = Routing([11, 12, 11], ids, np.full((3, 1, 2), 0.5), [TEX, "final", TEX], num_experts=3)
    moved = Routing(r.tokens, (ids + 1) % 3, r.weights, r.labels, num_experts=3)
    reply = SimpleNamespace(final="42", routing=r)
    effect = Effect(disable({0: [1]}), "q", reply, reply, pd.DataFrame({"P without": [0.5]}, index=["answer without"]),
                    r.route_changes(moved), r.agreement(moved), (r, moved))
    frame, card = r.to_frame(), r.expert_card(0, 1)
    shown = {"to_frame": frame, "a slice of it": frame[frame.layer == 0], "a group": frame.groupby("label").size()
             .reset_index(), "changed_tokens": effect.changed_tokens(), "a card's labels": card.labels,
             "a slice of a table": r.label_load()[:2], "a column as a frame": frame["label"].to_frame()}
    for name, value in shown.items():
        assert isinstance(value, pd.DataFrame), name
        page = _html(value)
        assert page.startswith(f"<div class='{NO_TYPESETTING}'>") and TEX in page, (name, page[:200])
    assert frame.weight.sum() == 6 * 0.5 and frame.sort_values("label").label.iloc[0] == TEX  # still a DataFrame


def test_counts_summaries_and_aggregates_of_a_frame_are_shown_out_of_mathjax():
    """`frame.label.value_counts().to_frame()`, `frame.value_counts(...)`, `describe(include="all")`, a group's
    `describe()` and `agg({...: [...]})` were plain DataFrames (pandas builds them anew): a label "$\\color{red}{x}$" in them was typeset."""
    from gptoss_lab.widgets.sanitize import NO_TYPESETTING

    r = Routing([11, 12, 11], np.array([[[0, 1]], [[1, 2]], [[2, 0]]]), np.full((3, 1, 2), 0.5), [TEX, "final", TEX],
                num_experts=3)
    frame = r.to_frame()
    shown = {"a column's counts": frame.label.value_counts().to_frame(),
             "a frame's counts": frame.value_counts(["label", "expert"]).reset_index(),
             "a summary": frame[["label", "weight"]].describe(include="all"),
             "a column's summary": frame.label.describe().to_frame(),
             "groups' summaries": frame.groupby("label", observed=True).weight.describe(),
             "aggregates": frame.agg({"label": ["unique"], "weight": ["sum"]}),
             "a column's aggregates": frame.label.agg(["unique", "nunique"]).to_frame()}
    for name, value in shown.items():
        page = _html(value)
        assert page.startswith(f"<div class='{NO_TYPESETTING}'>") and TEX in page, (name, page[:200])
    assert frame.label.value_counts()[TEX] == 4 and frame.value_counts("label")[TEX] == 4  # the counts are as before
    assert frame.agg({"weight": ["sum"]}).loc["sum", "weight"] == 3.0


def test_a_cross_table_of_a_frame_is_shown_out_of_mathjax_and_its_help_says_how():
    """`pd.crosstab(frame.label, frame.expert)` is pandas' own plain DataFrame: a label "$\\color{red}{x}$" in it was
    typeset, and nothing said how to keep it a Frame. `frame.crosstab("label", "expert")` is one (its counts
    pandas'), and the Frame's help names it."""
    from gptoss_lab.routing import Frame
    from gptoss_lab.widgets.sanitize import NO_TYPESETTING

    r = Routing([11, 12, 11], np.array([[[0, 1]], [[1, 2]], [[2, 0]]]), np.full((3, 1, 2), 0.5), [TEX, "final", TEX],
                num_experts=3)
    frame = r.to_frame()
    table = frame.crosstab("label", "expert")
    page = _html(table)
    assert page.startswith(f"<div class='{NO_TYPESETTING}'>") and TEX in page, page[:200]
    assert table.equals(Frame(pd.crosstab(frame.label, frame.expert))) and table.loc[TEX].tolist() == [2, 1, 1]
    shares = frame.crosstab("label", "expert", "weight", aggfunc="sum", normalize="index")
    assert shares.loc["final"].tolist() == [0.0, 0.5, 0.5]
    assert 'frame.crosstab("text", "expert")' in Frame.__doc__


def _markdown_export(html: str) -> str:
    """An output of `html` as `nbconvert --to markdown` writes it and a CommonMark reader (GitHub) then shows it."""
    import nbformat
    from markdown_it import MarkdownIt
    from nbconvert import MarkdownExporter

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("r", outputs=[
        nbformat.v4.new_output("execute_result", data={"text/html": html, "text/plain": "r"}, execution_count=1)])])
    markdown, _ = MarkdownExporter().from_notebook_node(notebook)
    return MarkdownIt("commonmark", {"html": True}).render(markdown).split("</pre>", 1)[1]  # after the cell's code


def test_a_frame_exported_to_markdown_is_a_table_not_its_style_as_code():
    """pandas' table starts with a <style> block with blank lines in it: `nbconvert --to markdown` ended the HTML block
    at the first one, and a reader of the Markdown (GitHub, a Markdown preview) saw the CSS as a code block."""
    output = _markdown_export(_corpus(tokens=4, layers=1, k=1).to_frame()._repr_html_())
    assert "<code>" not in output and "<table" in output and "<style scoped>" in output, output[:300]


def test_an_expert_card_exported_to_markdown_keeps_its_labels_text():
    """A label with a blank line in it ended the card's HTML block in `nbconvert --to markdown`: the rest of the label
    was Markdown there, its image fetched when the Markdown was read."""
    label = "doc\n\n![t](https://evil.example/p.png)"
    ids = np.array([[[0, 1]], [[1, 2]], [[2, 0]]])
    r = Routing([11, 12, 11], ids, np.full((3, 1, 2), 0.5), [label, "final", label], num_experts=3)
    output = _markdown_export(r.expert_card(0, 1)._repr_html_())
    assert "<img" not in output and "evil.example/p.png" in output and "<table>" in output, output


def test_a_table_shows_each_token_text_apart_with_its_controls_written_out():
    """pandas' HTML dropped a text's edge spaces: the top tokens "the" and " the" read alike and a token of spaces was
    an empty cell; a label's U+202E reversed the cell it was in (the figures and the view write both out)."""
    import re

    ids = [harmony.encode_text(piece)[0] for piece in ("the", " the", "   ")]
    r = Routing(ids, np.zeros((3, 1, 1), int), np.ones((3, 1, 1)), ["a\u202eb"] * 3, num_experts=1)
    frame = r.to_frame()
    for html in (r.top_tokens()._repr_html_(), frame._repr_html_(), frame.crosstab("text", "label")._repr_html_()):
        assert {"the", "␣the", "␣␣␣"} <= set(re.findall(r"<t[dh][^>]*>([^<]*)</t[dh]>", html)), html
    for html in (r.label_load()._repr_html_(), frame._repr_html_(), r.expert_card(0, 0)._repr_html_()):
        assert "\u202e" not in html and "a\\u202eb" in html


def test_the_text_form_of_a_table_writes_its_texts_as_the_html_form_does():
    """A table's text/plain (a terminal's print, a notebook's saved text) showed a label's ESC sequence raw and read
    " the" as "the"; its data keeps the real texts."""
    ids = [harmony.encode_text(piece)[0] for piece in ("the", " the")]
    r = Routing(ids, np.zeros((2, 1, 1), int), np.ones((2, 1, 1)), ["a\x1b[2J\u202e\u200b"] * 2, num_experts=1)
    frame = r.to_frame()
    for text in (repr(r.label_load()), repr(frame), repr(frame["label"]), str(r.top_tokens()["text"]),
                 frame.to_string(), r.label_load().to_string(), frame["label"].to_string()):   # to_string: raw before
        assert not {"\x1b", "\u202e", "\u200b"} & set(text) and ("a\\x1b[2J\\u202e\\u200b" in text or "␣the" in text), text
    assert "␣the" in repr(frame) and "␣the" in repr(r.top_tokens()) and "␣the" in frame.to_string()
    assert frame["label"][0] == "a\x1b[2J\u202e\u200b" and " the" in set(frame["text"])


def test_a_styled_table_shows_a_labels_html_as_text():
    """`table.style` (pandas' Styler, for a heat map) put a record's label into the page as HTML: `<img onerror=…>` ran
    in the notebook. Its texts are escaped and written out, out of MathJax's reach; the frame keeps the real label."""
    label = "<img src=x onerror=alert(1)>\x1b"
    r = Routing([11, 12], np.zeros((2, 1, 1), int), np.ones((2, 1, 1)), [label, "a"], num_experts=1)
    for table in (r.label_load(), r.to_frame(), r.label_divergence()):
        page = table.style.background_gradient().to_html()
        assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;\\x1b" in page and "mathjax_ignore" in page
    assert r.label_load().index.get_level_values("label")[0] == label


_SPREADSHEET_LABELS = ["=cmd|' /C calc'!A0", "@SUM(1+1)", "+x", "\t=1+1", "-5", "-", "\t\t", "a\x1bb"]


def _spreadsheet_record() -> Routing:
    """One token per label of `_SPREADSHEET_LABELS` (a record's meta.json from elsewhere holds any of them)."""
    n = len(_SPREADSHEET_LABELS)
    return Routing([11] * n, np.zeros((n, 1, 1), int), np.ones((n, 1, 1)), _SPREADSHEET_LABELS, num_experts=1)


def test_a_table_written_to_csv_makes_no_formula_in_a_spreadsheet():
    """A label `=cmd|' /C calc'!A0` went into `to_csv` as it is, and a spreadsheet opening the file ran it as a formula
    (`to_clipboard` pasted it so). A text a spreadsheet reads as a formula starts with a `'` there, which it shows as
    text; a number (-5), a lone "-" and whitespace stay as they are, a control character too (CSV holds it), and the
    frame keeps the real labels."""
    import csv
    import io

    r = _spreadsheet_record()
    frame = r.to_frame()
    escaped = ["'=cmd|' /C calc'!A0", "'@SUM(1+1)", "'+x", "'\t=1+1", "-5", "-", "\t\t", "a\x1bb"]
    rows = list(csv.DictReader(io.StringIO(frame.to_csv(index=False))))
    assert [row["label"] for row in rows] == escaped
    assert list(csv.reader(io.StringIO(frame["label"].to_csv(index=False))))[1:] == [[text] for text in escaped]
    labels = [row["label"] for row in csv.DictReader(io.StringIO(r.label_load().to_csv()))]  # labels in the index
    assert sorted(labels) == sorted(escaped)
    assert frame["label"].tolist() == _SPREADSHEET_LABELS


def test_a_table_written_to_excel_holds_no_formula_and_every_label(tmp_path):
    """`to_excel` wrote the label `=cmd|' /C calc'!A0` as a formula cell, and failed whole on a label holding ESC
    (openpyxl's IllegalCharacterError): each is a text cell now, the formula with a `'`, the control written out."""
    import openpyxl   # a dev dependency (pandas needs it for .xlsx), not one of the lab
    path = tmp_path / "routing.xlsx"
    _spreadsheet_record().to_frame().to_excel(path, index=False)
    column = [cell for cell in openpyxl.load_workbook(path).active["D"]][1:]   # the label column, after its name
    assert [cell.value for cell in column] == ["'=cmd|' /C calc'!A0", "'@SUM(1+1)", "'+x", "'\t=1+1", "-5", "-", "\t\t",
                                                 "a\\x1bb"]
    assert {cell.data_type for cell in column} == {"s"}


def test_a_styled_table_written_to_excel_holds_the_real_texts_and_no_formula(tmp_path):
    """`table.style.background_gradient().to_excel(...)` (a heat map for a spreadsheet) wrote the texts as the page shows
    them, HTML-escaped (a label `<b>` was `&lt;b&gt;`), and a label `=…` as a formula cell: it writes what `to_excel` of
    the table writes, with the cells' colours."""
    import openpyxl   # a dev dependency (pandas needs it for .xlsx), not one of the lab
    r = Routing([11, 12, 13], np.array([[[0]], [[1]], [[1]]]), np.ones((3, 1, 1)), ["=SUM(1+1)", "<b>", "<b>"],
                num_experts=2)
    path = tmp_path / "heat.xlsx"
    r.label_load().style.background_gradient().to_excel(path)
    sheet = openpyxl.load_workbook(path).active
    assert [cell.value for cell in sheet["A"]][1:] == ["'=SUM(1+1)", "<b>"] and {c.data_type for c in sheet["A"]} == {"s"}
    assert sheet["C2"].fill.fgColor.rgb != sheet["C3"].fill.fgColor.rgb   # the gradient's colours are kept


def test_a_table_with_a_carriage_return_reads_back_from_its_csv_row_for_row():
    """The tokens "\\r" and "\\r\\r" (and a label holding one) were written unquoted between "\\n" line ends: a
    reader (pandas, a spreadsheet) took the "\\r" for a line end, and each of the token's rows became two, the
    columns after it shifted. The CSV ends its lines with "\\r\\n" (RFC 4180), so every field holding either is quoted."""
    import io

    ids = [harmony.encode_text(piece)[0] for piece in ("a", "\r", "\r\r", "b")]
    r = Routing(ids, np.zeros((4, 1, 1), int), np.ones((4, 1, 1)), ["x", "x", "y\rz", "x"], num_experts=1)
    frame = r.to_frame()
    back = pd.read_csv(io.StringIO(frame.to_csv(index=False)), keep_default_na=False)
    assert back["text"].tolist() == ["a", "\r", "\r\r", "b"] and back["label"].tolist() == ["x", "x", "y\rz", "x"]
    assert back["token"].tolist() == ids
