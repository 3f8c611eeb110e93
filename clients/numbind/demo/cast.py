"""Who plays in the demo: the carrier, twelve fictional sample apps, two subscribers and the
bindings the story gives each of them. Data only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

CARRIER_ID = "demo-mobile"
CARRIER_NAME = "示例移动"
# On English pages: an English page shows no Chinese chrome.
CARRIER_NAME_EN = "Demo Mobile"
# The platform a visitor adds to the running demo themselves (the welcome text says how).
YOUR_APP_ID = "my-app"
YOUR_APP_NAME = "我的应用"


@dataclass(frozen=True)
class DemoRegistry:
    """One registry of the demo's federation."""

    id: str
    name: str


# The lifecycle authority and token service: carriers report and carrier apps ask here.
HUB = DemoRegistry("hub", "示例码号平台")
# Binding registries: each holds its own platforms' bindings and feeds.
NET = DemoRegistry("net", "示例互联网平台登记")
BANK = DemoRegistry("bank", "示例金融平台登记")
MEMBERS = (NET, BANK)
FEDERATION_ID = "demo"


@dataclass(frozen=True)
class SampleApp:
    id: str
    name: str
    category: str
    behaviour: str = "normal"  # normal | reject | slow | offline
    # The member the app publishes to.
    registry: str = NET.id


APPS = (
    SampleApp("demo-drive", "示例网盘", "cloud-drive"),
    SampleApp("demo-food", "示例外卖", "food-delivery"),
    SampleApp("demo-loan", "示例小贷", "lender", "reject", BANK.id),
    SampleApp("demo-bank", "示例银行", "bank", "slow", BANK.id),
    SampleApp("demo-social", "示例社交", "social"),
    SampleApp("demo-travel", "示例旅行", "travel", "offline"),
    SampleApp("demo-shop", "示例商城", "e-commerce"),
    SampleApp("demo-pay", "示例支付", "payments", registry=BANK.id),
    SampleApp("demo-ride", "示例出行", "ride-hailing"),
    SampleApp("demo-video", "示例视频", "video"),
    SampleApp("demo-game", "示例游戏", "games"),
    SampleApp("demo-health", "示例医疗", "health", registry=BANK.id),
)
REJECT_REASON = "该账户尚有未结清的借款，需原机主携带证件到网点核验后解绑"
SLOW_SECONDS = 8.0


@dataclass(frozen=True)
class Subscriber:
    label: str
    id_number: str  # fictional
    phone: str


NEW_HOLDER = Subscriber("new holder of a reissued number", "110105198808081234", "13800138000")
SECOND_NUMBER = "13912345678"  # the same subscriber's long-held number
QUIET = Subscriber("a subscriber with nothing bound", "310104199202025678", "13700137000")


def _days(n: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=n)


# (app, account id, bound days ago): accounts bound to the reissued number.
BEFORE_REPORT = (("demo-ride", "prev-r1", 5 * 365), ("demo-game", "prev-g1", 3 * 365))
JOINED_LATER = (
    ("demo-drive", "prev-d1", 4 * 365),
    ("demo-food", "prev-f1", 5 * 365),
    ("demo-food", "prev-f2", 2 * 365),
    ("demo-loan", "prev-l1", 540),
    ("demo-bank", "prev-b1", 3 * 365),
    ("demo-social", "prev-s1", 6 * 365),
    ("demo-social", "prev-s2", 700),
    ("demo-travel", "prev-t1", 2 * 365),
)
NEW_HOLDER_OWN = (("demo-shop", "new-s1", 30), ("demo-pay", "new-p1", 12))
SECOND_OWN = (
    ("demo-drive", "me-d1", 7 * 365),
    ("demo-pay", "me-p1", 5 * 365),
    ("demo-video", "me-v1", 700),
)
ISSUED_DAYS, DEACTIVATED_DAYS, REISSUED_DAYS = 6 * 365, 160, 40
