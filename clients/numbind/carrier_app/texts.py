"""The carrier app's words outside "my numbers": chrome, sign-in, errors, the reassigned
check, app categories. key -> (zh-CN, en); placeholders are str.format fields. Keys ending
in ``.one`` are the English singular of the key without it (Translator.count picks)."""

from __future__ import annotations

__all__ = ["COMMON"]

COMMON: dict[str, tuple[str, str]] = {
    # -- chrome ----------------------------------------------------------------------------
    "brand": ("号码绑定管家", "Number Bindings"),
    "brand.mark": ("号", "N"),
    "brand.by": ("{carrier} 客户服务", "{carrier} customer service"),
    "skip": ("跳到主要内容", "Skip to content"),
    "nav.label": ("主导航", "Main"),
    "nav.me": ("一证通查", "My numbers"),
    "nav.check": ("二次放号查询", "Reassigned check"),
    "nav.signin": ("登录", "Sign in"),
    "nav.signout": ("退出", "Sign out"),
    "lang.other": ("English", "中文"),
    "lang.other_label": ("Switch to English", "切换到简体中文"),
    # 适老化: a larger-text mode, remembered in a cookie.
    "text.large": ("大字", "Larger text"),
    "text.large_label": ("切换到大字模式（适老化）", "Switch to larger text"),
    "text.normal": ("标准字号", "Standard text"),
    "text.normal_label": ("切换回标准字号", "Switch back to standard text"),
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
    "err.bad_credentials_wait": (
        "手机号码或证件号码后六位不正确。为防止他人猜测，请 {seconds} 秒后再试。",
        "The number and the last six characters of the ID do not match. To keep guessers "
        "out, try again in {seconds} s.",
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
    "err.wait": (
        "尝试过于频繁，请 {seconds} 秒后再试。",
        "Too many tries. Try again in {seconds} s.",
    ),
    "err.code_spent": (
        "验证码错误次数过多，此验证码已失效，请重新获取。",
        "Too many wrong codes: this code no longer works. Send a new one.",
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
    "err.csrf": (
        "此表单已失效或并非来自本网站，操作未执行。请返回、刷新页面后重试。",
        "This form has expired or did not come from this site, so nothing was done. Go back, "
        "reload the page and try again.",
    ),
    "err.page_missing": ("页面不存在。", "There is no such page."),
    "err.title": ("出错了", "Something went wrong"),
    "err.home": ("返回首页", "Back to the start"),
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
    # Categories' labels: numbind.protocol.categories (shared with the registry).
}
