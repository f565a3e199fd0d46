"""`%%gptoss --json` in real JupyterLab + Chromium: an answer that does not match the schema says so in the chat view,
under the answer (it was shown as a success would be; only `_gptoss.errors` said why `.parsed` was None).

Screenshot: /tmp/gptoss_structured_warning.png.
"""
from __future__ import annotations

SETUP = ("%load_ext gptoss_lab\nimport pydantic\nfrom gptoss_lab import Session, ReplayEngine\n"
         "class Shopping(pydantic.BaseModel):\n    items: list[str]\n"
         "s = Session(ReplayEngine('<|channel|>final<|message|>{\"items\": \"coffee\"}<|return|>'), approval='auto')\n"
         "%gptoss use s")


def test_an_answer_that_fails_its_schema_is_flagged_in_the_chat_view(lab_notebook):
    page = lab_notebook([SETUP, "%%gptoss --json Shopping\nWhat do I need?", "print('DONE', _gptoss.parsed)"],
                        wait_for="text=DONE None", timeout=120)
    view = page.locator(".gx-chat")
    view.locator(".gx-final .gx-md:has-text('coffee')").wait_for(timeout=20_000)
    notice = view.locator(".gx-notice")
    notice.wait_for(timeout=20_000)
    assert notice.inner_text().strip().endswith(
        "the final answer does not match the schema: items: Input should be a valid array")
    page.screenshot(path="/tmp/gptoss_structured_warning.png", full_page=True)
