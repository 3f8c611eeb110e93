"""What kind of platform a principal is: one fixed vocabulary, with the labels holders read.

The registry refuses any other category (a free-form one let a registrant put HTML or a
megabyte in front of every holder); the carrier app and the CLI show the label in the
holder's language instead of the code. Pure data: the server and every client share it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATEGORIES", "Label", "category_problem", "label"]


@dataclass(frozen=True)
class Label:
    zh: str  # zh-CN
    en: str


# Code -> labels. Codes are lowercase ASCII with hyphens; add a code here and every side
# follows. "other" is the catch-all.
CATEGORIES: dict[str, Label] = {
    "cloud-drive": Label("网盘", "Cloud drive"),
    "food-delivery": Label("外卖", "Food delivery"),
    "lender": Label("贷款", "Lender"),
    "bank": Label("银行", "Bank"),
    "social": Label("社交", "Social"),
    "e-commerce": Label("购物", "Shopping"),
    "ride-hailing": Label("出行", "Ride-hailing"),
    "video": Label("视频", "Video"),
    "payments": Label("支付", "Payments"),
    "games": Label("游戏", "Games"),
    "travel": Label("旅行", "Travel"),
    "health": Label("医疗健康", "Health"),
    "other": Label("其他", "Other"),
}


def category_problem(code: str) -> str | None:
    """What a category must be, if `code` is not one; None when it is."""
    if code in CATEGORIES:
        return None
    return f"one of {', '.join(CATEGORIES)}"


def label(code: str, lang: str) -> str:
    """The label of `code` in `lang` ("zh" or "en"); an unknown code (a principal registered
    before the vocabulary existed) reads as "other"."""
    entry = CATEGORIES.get(code, CATEGORIES["other"])
    return entry.zh if lang.startswith("zh") else entry.en
