"""A small synthetic document folder for demos and tests: facts that exist nowhere but in these files.

`demo_folder(path)` writes the handbook of a fictional company (Markdown, text, HTML and a PDF); each
entry of `DEMO_FACTS` is a question, its answer, and the file and words that state it, so a test can
check that a model answered from the documents and cited the right line. `DEMO_RECORDING` is a
browsing turn over these documents, for `ReplayEngine`.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple


class Fact(NamedTuple):
    question: str
    answer: str
    file: str          # path inside the demo folder
    quote: str         # words of the line that states it


DEMO_FACTS = [
    Fact("How many days of paid leave do Kestrel Labs employees get?", "27", "handbook/leave.md",
         "27 days of paid leave"),
    Fact("What is the reset code of the rooftop inverter?", "7719", "equipment/solar-array.txt",
         "reset code is 7719"),
    Fact("How many people answered the 2024 staff survey?", "412", "reports/survey-2024.html",
         "412 colleagues answered"),
    Fact("What humidity should the greenhouse be kept at?", "68 percent", "manuals/greenhouse.pdf",
         "humidity at 68 percent"),
]

# A browsing turn as gpt-oss writes it, over `demo_folder`: search, open the first result, find, answer
# citing the lines it read. For ReplayEngine (teaching notebooks and tests, before a model browses).
DEMO_QUESTION = "What humidity should the greenhouse be kept at?"
DEMO_RECORDING = (
    "<|channel|>analysis<|message|>The user asks about the greenhouse humidity. Search the documents.<|end|>"
    "<|start|>assistant<|channel|>analysis to=browser.search code<|message|>{\"query\": \"greenhouse humidity\"}<|call|>"
    "<|channel|>analysis<|message|>Result 0 is the greenhouse manual. Open it.<|end|>"
    "<|start|>assistant<|channel|>analysis to=browser.open code<|message|>{\"id\": 0, \"cursor\": 0}<|call|>"
    "<|channel|>analysis<|message|>Check every mention of humidity in the manual.<|end|>"
    "<|start|>assistant<|channel|>analysis to=browser.find code<|message|>{\"pattern\": \"humidity\", \"cursor\": 1}<|call|>"
    "<|channel|>analysis<|message|>Only one line gives the humidity: 68 percent, line 4 of page 1.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Keep the greenhouse at **68 percent** humidity during the day and "
    "let it fall at night 【1†L4】. The temperature should stay between 18 and 24 °C 【1†L5】.<|return|>"
)

_LEAVE = """# Paid leave at Kestrel Labs

Kestrel Labs is a small research company. This page explains how paid leave works for everyone
on the payroll, whether they work in the lab, the workshop or the office.

## How much leave

Every employee gets 27 days of paid leave per calendar year, on top of public holidays. Part-time
colleagues get the same share of their working days. Up to five unused days can be carried over
into the first quarter of the next year; days not taken by the end of March are lost.

## Asking for leave

Ask your team lead at least two weeks ahead for leave of more than three days. Short leave can be
asked for a day ahead. Leave is recorded in the shared calendar so that the lab rota stays covered.

## Sick days

Sick days are not taken from paid leave. From the third day of an illness, send a doctor's note to
the office. Sick days during approved leave are given back when the note arrives.
"""

_SOLAR = """Rooftop solar array: maintenance notes
=======================================

The array on the workshop roof has 36 panels in four strings and one central inverter, model QX-40.
It feeds the lab's battery room first and the grid second.

Cleaning
--------
Rinse the panels with deionised water in April and September. Never use brushes with metal bristles
and never clean the panels in full sun: the cold water can crack warm glass.

Inverter
--------
After every firmware update the inverter must be reset by hand. Open the panel at the back of the
battery room, hold the red button for ten seconds and enter the code on the keypad: the reset code is 7719.
The display shows READY when the inverter is back on the grid. If it shows E-12 instead, call the
installer; do not try the code more than three times.

Yearly check
------------
An electrician checks the strings, the cabling and the earthing once a year, in October.
"""

_SURVEY = """<!DOCTYPE html>
<html><head><title>Staff survey 2024: results</title></head>
<body>
<nav><a href="../handbook/leave.md">Leave</a> | <a href="https://example.org/kestrel">Kestrel Labs on the web</a></nav>
<h1>Staff survey 2024</h1>
<p>The survey ran for three weeks in May 2024. In total 412 colleagues answered, which is 86% of
everyone on the payroll and the highest share since the survey began.</p>
<h2>What people liked</h2>
<ul><li>The flexible hours in the office and the workshop.</li>
<li>The new battery room and the rooftop solar array.</li>
<li>Friday seminars, which 71% attended at least once.</li></ul>
<h2>What should change</h2>
<p>Most comments asked for more quiet rooms and for the lab rota to be published a month ahead.
Both changes start in January 2025.</p>
</body></html>
"""

_GREENHOUSE = [
    "Greenhouse operating manual",
    "",
    "The greenhouse behind the lab grows the test plants for the soil projects.",
    "Keep the humidity at 68 percent during the day and let it fall at night.",
    "The temperature should stay between 18 and 24 degrees Celsius.",
    "Water the seed trays every morning before nine; the big pots twice a week.",
    "Open the roof vents when the temperature passes 26 degrees.",
    "Write every change of the settings in the logbook by the door.",
]


def demo_folder(path: str | Path) -> Path:
    """Write the demo documents into `path` (created if needed) and return it."""
    root = Path(path).expanduser()
    files = {"handbook/leave.md": _LEAVE, "equipment/solar-array.txt": _SOLAR, "reports/survey-2024.html": _SURVEY}
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    pdf = root / "manuals/greenhouse.pdf"
    pdf.parent.mkdir(parents=True, exist_ok=True)
    pdf.write_bytes(text_pdf(_GREENHOUSE, title="Greenhouse operating manual"))
    return root


def text_pdf(lines: list[str], *, title: str = "") -> bytes:
    """A one-page PDF showing `lines` in Helvetica (enough for text extraction; no PDF library needed)."""
    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    shown = "".join(f"({escape(line)}) Tj T* " for line in lines)
    stream = f"BT /F1 11 Tf 14 TL 60 780 Td {shown}ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Title ({escape(title)}) >>".encode("latin-1"),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 6 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
