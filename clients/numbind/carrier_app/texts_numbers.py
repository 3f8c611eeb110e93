"""The carrier app's words for "my numbers" (一证通查), the confirmation and the progress of
一键解绑. key -> (zh-CN, en); placeholders are str.format fields. Keys ending in ``.one``
are the English singular of the key without it (Translator.count picks)."""

from __future__ import annotations

__all__ = ["NUMBERS"]

NUMBERS: dict[str, tuple[str, str]] = {
    # -- the page ------------------------------------------------------------------------
    "me.title": ("一证通查", "All numbers under my ID"),
    "me.count": ("您的证件名下共有 {n} 个号码。", "{n} numbers are registered under your ID."),
    "me.count.one": ("您的证件名下共有 1 个号码。", "1 number is registered under your ID."),
    "me.no_numbers": ("您的证件名下暂无号码。", "There are no numbers under your ID."),
    "me.number_label": ("号码", "Number"),
    "me.since": ("{date} 起由您使用", "Yours since {date}"),
    "me.load_failed": (
        "暂时无法读取此号码的绑定信息，请稍后刷新。",
        "We could not load this number's bindings just now. Refresh in a moment.",
    ),
    "me.registry": ("登记于 {name}", "Registered with {name}"),
    "me.unreachable": (
        "暂时联系不上 {names}，在那里登记的应用可能没有列在下面。请稍后刷新再看。",
        "We could not reach {names} just now: apps registered there may be missing from "
        "the lists below. Refresh later to check.",
    ),
    "me.empty": (
        "没有任何应用绑定此号码，无需处理。",
        "No app holds a binding to this number. Nothing to do.",
    ),
    "me.banner": (
        "已提交解绑请求，正在通知 {n} 个应用。{promise}",
        "Unbinding requested: we are asking {n} apps. {promise}",
    ),
    "me.banner.one": (
        "已提交解绑请求，正在通知 1 个应用。{promise}",
        "Unbinding requested: we are asking 1 app. {promise}",
    ),
    "me.nothing": (
        "没有需要解绑的账号：这些应用已在处理中，或已解绑。",
        "There was nothing to unbind: those apps are already on it, or done.",
    ),
    "promise": (
        "通常几秒内完成，最长不超过 {duration}。",
        "Usually done in seconds, never more than {duration}.",
    ),
    "promise.unknown": ("通常几秒内完成。", "Usually done in seconds."),
    # -- the groups ----------------------------------------------------------------------
    "me.previous": ("前任机主的绑定", "Previous holder's"),
    "me.previous_note": (
        "在您于 {date} 获得此号码之前绑定，账号不属于您",
        "Bound before you got this number on {date}; these accounts are not yours",
    ),
    "me.previous_empty": ("没有前任机主留下的绑定。", "Nothing left behind by a previous holder."),
    "me.mine": ("您的绑定", "Yours"),
    "me.mine_note": ("在您使用此号码期间绑定", "Bound since the number became yours"),
    "me.mine_empty": ("暂无您本人的绑定。", "No bindings of your own."),
    "me.mine_unknown": (
        "暂时无法确认：上面提到的登记处联系不上，其中的应用没有列出。",
        "Not known for now: the registry named above could not be reached, and its apps are "
        "not listed.",
    ),
    "me.still_bound": ("仍绑定 {n} 个应用", "{n} apps still bound"),
    "me.still_bound.one": ("仍绑定 1 个应用", "1 app still bound"),
    "lead.bound": (
        "这些应用仍绑定着前任机主的账号，您可以一键解绑。",
        "These apps still hold the previous holder's accounts. You can unbind them all at once.",
    ),
    "lead.live": ("正在解绑：{parts}。", "Unbinding: {parts}."),
    "lead.all_done": (
        "已全部解绑：{parts}。",
        "All unbound: {parts}.",
    ),
    "lead.result": ("处理结果：{parts}。", "Result: {parts}."),
    "lead.none_done": (
        "尚未解绑任何账号：{parts}。请按各应用下方的提示处理。",
        "Nothing has been unbound yet: {parts}. See what to do under each app.",
    ),
    "lead.also_bound": (
        "另有 {n} 个应用尚未通知。",
        "{n} more apps have not been asked yet.",
    ),
    "lead.also_bound.one": ("另有 1 个应用尚未通知。", "1 more app has not been asked yet."),
    "lead.requested": ("解绑请求提交于 {time}", "Unbinding requested {time}"),
    "part.DONE": ("已解绑 {n} 个", "{n} unbound"),
    "part.REJECTED": ("拒绝 {n} 个", "{n} refused"),
    "part.OVERDUE": ("超时未确认 {n} 个", "{n} overdue"),
    "part.open": ("处理中 {n} 个", "{n} in progress"),
    # -- one app -------------------------------------------------------------------------
    "me.accounts": ("{n} 个账号", "{n} accounts"),
    "me.accounts.one": ("1 个账号", "1 account"),
    "me.unbound_accounts": ("{n} 个账号已解绑", "{n} accounts unbound"),
    "me.unbound_accounts.one": ("1 个账号已解绑", "1 account unbound"),
    "me.bound_on": ("绑定于 {date}", "Bound {date}"),
    "me.bound_range": ("绑定于 {start} 至 {end}", "Bound {start} – {end}"),
    "state.": ("仍绑定", "Bound"),
    "state.PENDING": ("等待送达", "Pending"),
    "state.DELIVERED": ("应用处理中", "With the app"),
    "state.DONE": ("已解绑", "Unbound"),
    "state.REJECTED": ("应用拒绝", "Refused"),
    "state.OVERDUE": ("超时未确认", "Overdue"),
    "row.deadline": ("应于 {time} 前完成", "Due by {time}"),
    "row.reason": ("应用给出的原因：{reason}", "The app's reason: {reason}"),
    "row.next_refused": (
        "您可以：联系{app}客服，提供解绑单号 {ref}，请其核实后解绑；或向{carrier}投诉{contact}，"
        "同样提供此单号。",
        "What you can do: contact {app}'s customer service quoting reference {ref} and ask "
        "them to check and unbind; or complain to {carrier}{contact}, quoting the same "
        "reference.",
    ),
    "row.overdue": (
        "该应用未在期限内确认。",
        "This app did not confirm in time.",
    ),
    "row.next_overdue": (
        "您可以再次通知该应用；如仍无回应，可向{carrier}投诉{contact}，并提供解绑单号 {ref}。",
        "You can ask it again; if it still does not answer, complain to {carrier}{contact}, "
        "quoting reference {ref}.",
    ),
    "row.contact": ("（客服电话 {phone}）", " (call {phone})"),
    # -- actions -------------------------------------------------------------------------
    "me.revoke_all": ("一键解绑（{n} 个应用）", "Unbind all ({n} apps)"),
    "me.revoke_all.one": ("一键解绑（1 个应用）", "Unbind all (1 app)"),
    "me.revoke_all_hint": (
        "解除前任机主在这些应用中绑定的账号，您本人的账号不受影响。{promise}",
        "Unbinds the previous holder's accounts at these apps; your own accounts stay. {promise}",
    ),
    "me.retry": ("再次通知 {names}", "Ask {names} again"),
    "me.retry_hint": (
        "只通知超时未确认的应用；拒绝解绑的应用不会再次通知，请按其下方提示处理。",
        "Only apps that did not confirm in time are asked again; an app that refused is "
        "not, see what to do under it.",
    ),
    "me.revoke_one": ("解绑", "Unbind"),
    "me.revoke_one_label": ("解绑 {name}", "Unbind {name}"),
    "me.retry_one": ("再次通知", "Ask again"),
    "me.retry_one_label": ("再次通知 {name}", "Ask {name} again"),
    # -- confirmation --------------------------------------------------------------------
    "confirm.title": ("确认解绑", "Confirm unbinding"),
    "confirm.previous": (
        "我们将通知以下 {n} 个应用，解除前任机主绑定在 {phone} 上的账号：{names}。"
        "您本人的账号不受影响。{promise}",
        "We will ask these {n} apps to unbind the previous holder's accounts from {phone}: "
        "{names}. Your own accounts are not affected. {promise}",
    ),
    "confirm.previous.one": (
        "我们将通知 {names} 解除前任机主绑定在 {phone} 上的账号。您本人的账号不受影响。{promise}",
        "We will ask {names} to unbind the previous holder's accounts from {phone}. Your "
        "own accounts are not affected. {promise}",
    ),
    "confirm.retry": (
        "我们将再次通知 {names}，解除前任机主绑定在 {phone} 上的账号。{promise}",
        "We will ask {names} again to unbind the previous holder's accounts from {phone}. "
        "{promise}",
    ),
    "confirm.platform": (
        "我们将通知 {name} 解除 {phone} 上的全部绑定，包括您本人的账号。解绑后如需继续使用，"
        "请在该应用中重新绑定手机号。{promise}",
        "We will ask {name} to unbind every account bound to {phone}, including yours. To "
        "keep using it, bind your number again in that app. {promise}",
    ),
    "confirm.ok": ("确认解绑", "Unbind"),
    "confirm.ok_retry": ("再次通知", "Ask again"),
    "confirm.cancel": ("取消", "Cancel"),
    "confirm.back": ("返回", "Back"),
    # -- the registry's verifiable log -------------------------------------------------
    "proof.mark": ("已入公开日志", "Logged"),
    "proof.title": (
        "解绑请求已写入可公开验证的日志；点击下载证明文件",
        "This request is in the registry's verifiable log; download the proof",
    ),
    # -- durations -----------------------------------------------------------------------
    "dur.hours": ("{n} 小时", "{n} hours"),
    "dur.hours.one": ("1 小时", "1 hour"),
    "dur.minutes": ("{n} 分钟", "{n} minutes"),
    "dur.minutes.one": ("1 分钟", "1 minute"),
    "dur.seconds": ("{n} 秒", "{n} seconds"),
    "dur.seconds.one": ("1 秒", "1 second"),
}
