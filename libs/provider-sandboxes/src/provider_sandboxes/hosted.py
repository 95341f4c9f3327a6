"""The providers' hosted pages as the sandboxes serve them: Stripe Checkout in setup mode (a card)
and GoCardless's billing request flow (a bank account for a mandate). A customer's browser is
sent there by the merchant, fills in the form, and is sent back to the merchant's URL; card and
bank details stay here, as they stay with the real providers."""

from __future__ import annotations

from html import escape

_STYLE = (
    "body{font-family:system-ui,'DejaVu Sans',sans-serif;background:#f6f8fa;color:#1a1f36;margin:0}"
    "main{max-width:420px;margin:48px auto;background:#fff;border:1px solid #e3e8ee;border-radius:10px;padding:28px}"
    "h1{font-size:20px;margin:0 0 6px}p{color:#697386;font-size:14px}label{display:block;font-size:13px;color:#697386;margin:14px 0 4px}"
    "input{width:100%;box-sizing:border-box;padding:10px;border:1px solid #cfd7df;border-radius:6px;font-size:15px}"
    ".row{display:flex;gap:10px}.row label{flex:1}button{margin-top:20px;width:100%;padding:12px;border:0;border-radius:6px;"
    "background:#635bff;color:#fff;font-size:15px;cursor:pointer}.error{background:#fdecea;color:#a02617;padding:10px;border-radius:6px}"
    ".sandbox{font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:#b35900}a{color:#635bff}"
)


def page(title: str, intro: str, fields: str, button: str, *, error: str | None = None, cancel_url: str | None = None, accent: str = "#635bff") -> str:
    """One hosted page: a form posted back to the same address."""
    problem = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    cancel = f'<p><a href="{escape(cancel_url)}" id="cancel">Cancel and go back</a></p>' if cancel_url else ""
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE.replace('#635bff', accent)}</style></head><body><main>"
        f'<p class="sandbox">Sandbox · test data only</p><h1>{escape(title)}</h1><p>{escape(intro)}</p>{problem}'
        f'<form method="post">{fields}<button type="submit" id="submit">{escape(button)}</button></form>{cancel}</main></body></html>'
    )


def field(label: str, name: str, value: str = "", *, placeholder: str = "", autocomplete: str = "") -> str:
    return (
        f'<label>{escape(label)}<input name="{escape(name)}" value="{escape(value)}" placeholder="{escape(placeholder)}"'
        f' autocomplete="{escape(autocomplete)}" required></label>'
    )
