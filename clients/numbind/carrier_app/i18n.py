"""Every string the carrier app shows, in one table: Simplified Chinese first, English second.

Pages are Chinese by default; ``?lang=en`` (kept in a cookie) switches to English. Times are
shown in China Standard Time (UTC+8), the carrier's own clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = ["CST", "DEFAULT_LANG", "LANGS", "TEXT", "Translator", "pick_lang"]

LANGS = ("zh", "en")
DEFAULT_LANG = "zh"
CST = timezone(timedelta(hours=8), "CST")

# key -> (zh-CN, en). Placeholders are str.format fields.
TEXT: dict[str, tuple[str, str]] = {
    # -- chrome ----------------------------------------------------------------------------
    "brand": ("号码绑定管家", "Number Bindings"),
    "brand.by": ("{carrier} 客户服务", "{carrier} customer service"),
    "skip": ("跳到主要内容", "Skip to content"),
    "nav.label": ("主导航", "Main"),
    "nav.me": ("一证通查", "My numbers"),
    "nav.check": ("二次放号查询", "Reassigned check"),
    "nav.signin": ("登录", "Sign in"),
    "nav.signout": ("退出", "Sign out"),
    "lang.other": ("English", "中文"),
    "lang.other_label": ("Switch to English", "切换到简体中文"),
    "demo.badge": ("演示", "DEMO"),
    "demo.note": (
        "演示模式：号码、证件和平台均为虚构，验证码直接显示在页面上。",
        "Demo mode: numbers, IDs and apps are fictional; codes are shown on the page.",
    ),
    "demo.code": ("演示验证码：{code}", "Demo code: {code}"),
    "demo.code_note": (
        "正式环境中验证码以短信发送到您的手机；演示模式下同时写入服务器日志。",
        "In production the code is sent to your phone by SMS; in demo mode it is also written "
        "to the server log.",
    ),
    "footer.privacy": (
        "您的号码不会发送给绑定登记平台：查询前，号码先在运营商侧转换为无法逆推的令牌。",
        "Your number is never sent to the binding registry: the carrier turns it into a "
        "one-way token before any lookup.",
    ),
    "footer.about": ("numbind 运营商参考应用", "numbind reference carrier app"),
    # -- sign-in ---------------------------------------------------------------------------
    "signin.title": ("登录", "Sign in"),
    "signin.lead": (
        "查看您证件名下每个号码在各应用中的绑定，一键解除前任机主留下的绑定。",
        "See which apps hold bindings to every number under your ID, and remove what a "
        "previous holder left behind in one step.",
    ),
    "signin.phone": ("手机号码", "Mobile number"),
    "signin.phone_hint": ("本运营商的手机号码", "A mobile number with this carrier"),
    "signin.id_tail": ("证件号码后六位", "Last six characters of your ID number"),
    "signin.id_tail_hint": ("末位为 X 时请输入 X", "Type X if your ID ends in X"),
    "signin.get_code": ("获取验证码", "Send code"),
    "signin.code": ("验证码", "Code"),
    "signin.code_hint": ("6 位数字", "6 digits"),
    "signin.code_sent": (
        "验证码已发送至 {phone}，{minutes} 分钟内有效。",
        "We sent a code to {phone}. It is valid for {minutes} minutes.",
    ),
    "signin.submit": ("登录", "Sign in"),
    "signin.restart": ("重新获取验证码", "Send a new code"),
    "signin.signed_out": ("您已退出登录。", "You have signed out."),
    # -- sign-in errors --------------------------------------------------------------------
    "err.bad_phone": ("请输入有效的手机号码。", "Enter a valid mobile number."),
    "err.bad_tail": (
        "请输入证件号码的后六位（数字或 X）。",
        "Enter the last six characters of your ID number (digits or X).",
    ),
    "err.bad_credentials": (
        "手机号码或证件号码后六位不正确。",
        "The number and the last six characters of the ID do not match our records.",
    ),
    "err.bad_credentials_left": (
        "手机号码或证件号码后六位不正确，还可尝试 {n} 次。",
        "The number and the last six characters of the ID do not match; {n} tries left.",
    ),
    "err.code_format": ("请输入 6 位数字验证码。", "Enter the 6-digit code."),
    "err.wrong_code": (
        "验证码不正确，还可尝试 {n} 次。",
        "That code is not right; {n} tries left.",
    ),
    "err.code_expired": ("验证码已过期，请重新获取。", "The code has expired. Send a new one."),
    "err.challenge": (
        "验证码已失效，请重新获取。",
        "This code is no longer valid. Send a new one.",
    ),
    "err.locked": (
        "错误次数过多，该号码已锁定 15 分钟，请于 {time} 后再试。",
        "Too many wrong tries: this number is locked for 15 minutes. Try again after {time}.",
    ),
    "err.session": ("登录已过期，请重新登录。", "Your session has ended. Please sign in again."),
    # -- registry errors, in plain words ---------------------------------------------------
    "err.unavailable": (
        "服务暂时不可用，请稍后再试。",
        "The service is temporarily unavailable. Please try again later.",
    ),
    "err.busy": (
        "请求过于频繁，请稍后再试。",
        "Too many requests right now. Please try again shortly.",
    ),
    "err.not_your_carrier": (
        "暂时无法查询该号码：登记平台尚无本运营商为此号码提供服务的记录。",
        "We cannot look this number up yet: the registry has no record of us serving it.",
    ),
    "err.carrier_auth": (
        "本运营商与登记平台的连接认证失败，请联系客服。",
        "Our connection to the registry failed authentication. Please contact customer service.",
    ),
    "err.refused": (
        "该操作当前无法执行，请稍后再试。",
        "This cannot be done right now. Please try later.",
    ),
    "err.conflict": (
        "该请求已处理过，请刷新页面查看最新状态。",
        "This request was already handled. Refresh the page to see where it stands.",
    ),
    "err.not_found": ("未找到相关记录。", "No such record."),
    "err.invalid": (
        "请求内容有误，请刷新页面后重试。",
        "Something in the request was not right. Refresh the page and try again.",
    ),
    "err.proof": (
        "登记平台的安全校验未通过，本次操作已停止，请联系客服。",
        "The registry's answer failed its security check, so we stopped. Please contact us.",
    ),
    "err.server": (
        "服务出现异常，请稍后再试。",
        "Something went wrong on our side. Please try later.",
    ),
    "err.forbidden": ("请求来源无效。", "This request did not come from this site."),
    "err.page_missing": ("页面不存在。", "There is no such page."),
    "err.title": ("出错了", "Something went wrong"),
    "err.home": ("返回首页", "Back to the start"),
    # -- 一证通查 ---------------------------------------------------------------------------
    "me.title": ("一证通查", "All numbers under my ID"),
    "me.count": ("您的证件名下共有 {n} 个号码。", "{n} numbers are registered under your ID."),
    "me.count_one": ("您的证件名下共有 1 个号码。", "1 number is registered under your ID."),
    "me.lead": (
        "以下是仍绑定在这些号码上的应用账号。",
        "These apps still have accounts bound to them.",
    ),
    "me.lead_one": (
        "以下是仍绑定在此号码上的应用账号。",
        "These apps still have accounts bound to it.",
    ),
    "me.no_numbers": ("您的证件名下暂无号码。", "There are no numbers under your ID."),
    "me.number_label": ("号码", "Number"),
    "me.since": ("{date} 起由您使用", "Yours since {date}"),
    "me.previous": ("前任机主的绑定", "Previous holder's"),
    "me.previous_note": (
        "在您于 {date} 获得此号码之前绑定，账号不属于您",
        "Bound before you got this number on {date}; these accounts are not yours",
    ),
    "me.mine": ("您的绑定", "Yours"),
    "me.mine_note": ("在您使用此号码期间绑定", "Bound since the number became yours"),
    "me.empty": (
        "没有任何应用绑定此号码，无需处理。",
        "No app holds a binding to this number. Nothing to do.",
    ),
    "me.previous_empty": ("没有前任机主留下的绑定。", "Nothing left behind by a previous holder."),
    "me.mine_empty": ("暂无您本人的绑定。", "No bindings of your own."),
    "me.accounts_one": ("1 个账号", "1 account"),
    "me.accounts_many": ("{n} 个账号", "{n} accounts"),
    "me.bound_on": ("绑定于 {date}", "Bound {date}"),
    "me.bound_range": ("绑定于 {start} 至 {end}", "Bound {start} – {end}"),
    "me.revoke_all": ("一键解绑（{n} 个应用）", "Unbind all ({n} apps)"),
    "me.revoke_all_one": ("一键解绑（1 个应用）", "Unbind all (1 app)"),
    "me.revoke_all_hint": (
        "解除前任机主在这些应用中绑定的账号，您本人的账号不受影响。",
        "Unbinds the previous holder's accounts at these apps; your own accounts stay.",
    ),
    "me.revoke_one": ("解绑", "Unbind"),
    "me.revoke_one_label": ("解绑 {name}", "Unbind {name}"),
    "me.open": ("解绑中", "Unbinding"),
    "me.open_overdue": ("解绑超时", "Overdue"),
    "me.refused": ("应用拒绝解绑", "Refused by the app"),
    "me.load_failed": ("暂时无法读取绑定信息。", "We could not load the bindings just now."),
    "me.started": (
        "已提交解绑请求，正在通知 {n} 个应用。",
        "Unbinding requested: notifying {n} apps.",
    ),
    "me.started_one": (
        "已提交解绑请求，正在通知 1 个应用。",
        "Unbinding requested: notifying 1 app.",
    ),
    "me.started_none": (
        "已提交解绑请求：没有需要解绑的账号。",
        "Unbinding requested: there was nothing left to unbind.",
    ),
    # -- confirmation ----------------------------------------------------------------------
    "confirm.title": ("确认解绑", "Confirm unbinding"),
    "confirm.previous": (
        "我们将通知以下 {n} 个应用，解除前任机主绑定在 {phone} 上的账号：{names}。"
        "您本人的账号不受影响。",
        "We will ask these {n} apps to unbind the previous holder's accounts from {phone}: "
        "{names}. Your own accounts are not affected.",
    ),
    "confirm.platform": (
        "我们将通知 {name} 解除 {phone} 上的全部绑定，包括您本人的账号。解绑后如需继续使用，"
        "请在该应用中重新绑定手机号。",
        "We will ask {name} to unbind every account bound to {phone}, including yours. To "
        "keep using it, bind your number again in that app.",
    ),
    "confirm.ok": ("确认解绑", "Unbind"),
    "confirm.cancel": ("取消", "Cancel"),
    "confirm.back": ("返回", "Back"),
    # -- progress --------------------------------------------------------------------------
    "progress.title": ("解绑进度", "Unbinding progress"),
    "progress.scope.previous": ("前任机主的绑定", "Previous holder's bindings"),
    "progress.scope.platform": ("单个应用", "One app"),
    "progress.requested": ("提交于 {time}", "Requested {time}"),
    "progress.count.DONE": ("已解绑 {n}", "{n} unbound"),
    "progress.count.REJECTED": ("拒绝 {n}", "{n} rejected"),
    "progress.count.OVERDUE": ("超时 {n}", "{n} overdue"),
    "progress.count.open": ("处理中 {n}", "{n} in progress"),
    "progress.live": ("实时更新中", "Updating live"),
    "progress.finished": ("已全部处理完毕", "All finished"),
    "progress.waiting": ("仍有应用未确认", "Some apps have not confirmed"),
    "progress.nothing": ("没有需要解绑的账号。", "There was nothing left to unbind."),
    "progress.load_failed": ("暂时无法读取进度，稍后自动重试。", "Progress unavailable; retrying."),
    "progress.reason": ("原因：{reason}", "Reason: {reason}"),
    "progress.overdue_note": (
        "该应用未在期限内确认，运营商将督促处理。",
        "This app did not confirm in time; we will follow it up.",
    ),
    "state.PENDING": ("等待送达", "Pending"),
    "state.DELIVERED": ("应用处理中", "Delivered"),
    "state.DONE": ("已解绑", "Unbound"),
    "state.REJECTED": ("应用拒绝", "Rejected"),
    "state.OVERDUE": ("已超时", "Overdue"),
    # -- reassigned check ------------------------------------------------------------------
    "check.title": ("二次放号查询", "Reassigned-number check"),
    "check.kind": (
        "运营商号码查询服务 · 供致电方使用，非机主功能",
        "Carrier lookup service · for callers, not a holder feature",
    ),
    "check.lead": (
        "致电或发短信之前，查询某号码自某日以来是否已重新分配给新用户。本服务面向银行、"
        "贷款机构、催收机构等需要联系号码的一方；结果只有“是 / 否 / 无数据”，不含任何机主信息。",
        "Before you call or text, check whether a number has been given to someone new since "
        "a date. For banks, lenders, collection agencies and anyone else who contacts "
        "numbers; the answer is only yes / no / no data and says nothing about any holder.",
    ),
    "check.number": ("要查询的号码", "Number to check"),
    "check.since": ("自此日期以来", "Since this date"),
    "check.since_hint": (
        "通常填写您最后一次确认该号码归属的日期",
        "Usually the date you last confirmed who held the number",
    ),
    "check.submit": ("查询", "Check"),
    "check.result": ("查询结果：", "Result: "),
    "check.yes": ("是", "Yes"),
    "check.yes_text": (
        "该号码自 {date} 以来已重新分配给新用户。请勿再以此号码联系原用户。",
        "This number has been reassigned since {date}. Do not use it to reach the old holder.",
    ),
    "check.no": ("否", "No"),
    "check.no_text": (
        "该号码自 {date} 以来未重新分配。",
        "This number has not been reassigned since {date}.",
    ),
    "check.nodata": ("无数据", "No data"),
    "check.nodata_text": (
        "暂无足够记录判断该号码自 {date} 以来是否重新分配。",
        "There are not enough records to tell whether it was reassigned since {date}.",
    ),
    "check.bad_date": ("请输入有效日期。", "Enter a valid date."),
    "check.future": ("日期不能晚于今天。", "The date cannot be in the future."),
    # -- categories ------------------------------------------------------------------------
    "cat.cloud-drive": ("网盘", "Cloud drive"),
    "cat.food-delivery": ("外卖", "Food delivery"),
    "cat.lender": ("贷款", "Lender"),
    "cat.bank": ("银行", "Bank"),
    "cat.social": ("社交", "Social"),
    "cat.e-commerce": ("购物", "Shopping"),
    "cat.ride-hailing": ("出行", "Ride-hailing"),
    "cat.video": ("视频", "Video"),
    "cat.payments": ("支付", "Payments"),
    "cat.games": ("游戏", "Games"),
    "cat.travel": ("旅行", "Travel"),
    "cat.health": ("医疗健康", "Health"),
    "cat.other": ("其他", "Other"),
}

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def pick_lang(query: str | None, cookie: str | None) -> str:
    for candidate in (query, cookie):
        if candidate in LANGS:
            return candidate
    return DEFAULT_LANG


class Translator:
    """Strings, dates and labels for one language; templates call it as ``t(key, ...)``."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGS else DEFAULT_LANG
        self._i = LANGS.index(self.lang)

    def __call__(self, key: str, **fields: object) -> str:
        text = TEXT[key][self._i]
        return text.format(**fields) if fields else text

    @property
    def html_lang(self) -> str:
        return "zh-CN" if self.lang == "zh" else "en"

    def date(self, when: datetime | None) -> str:
        if when is None:
            return "—"
        d = when.astimezone(CST)
        if self.lang == "zh":
            return f"{d.year}年{d.month}月{d.day}日"
        return f"{d.day} {_MONTHS[d.month - 1]} {d.year}"

    def date_time(self, when: datetime | None) -> str:
        if when is None:
            return "—"
        d = when.astimezone(CST)
        sep = " " if self.lang == "zh" else ", "
        return f"{self.date(d)}{sep}{d:%H:%M}"

    def short_date(self, when: datetime | None) -> str:
        if when is None:
            return "—"
        d = when.astimezone(CST)
        return f"{d:%Y.%m.%d}" if self.lang == "zh" else f"{d.day} {_MONTHS[d.month - 1]} {d.year}"

    def progress_summary(self, states: list[str]) -> str:
        """已解绑 4 · 拒绝 1 · 超时 1 · 处理中 0, leaving out what is zero."""
        parts = []
        for state in ("DONE", "REJECTED", "OVERDUE"):
            n = states.count(state)
            if n:
                parts.append(self(f"progress.count.{state}", n=n))
        still = sum(s not in ("DONE", "REJECTED", "OVERDUE") for s in states)
        if still:
            parts.append(self("progress.count.open", n=still))
        return " · ".join(parts)

    def category(self, category: str) -> str:
        entry = TEXT.get(f"cat.{category}")
        return entry[self._i] if entry else category

    def state(self, state: str) -> str:
        entry = TEXT.get(f"state.{state}")
        return entry[self._i] if entry else state

    def accounts(self, n: int) -> str:
        return self("me.accounts_one") if n == 1 else self("me.accounts_many", n=n)

    def names(self, names: list[str]) -> str:
        return ("、" if self.lang == "zh" else ", ").join(names)
