#!/usr/bin/env python3
"""Generate the synthetic data for the `support-triage` example.

Writes two JSON Lines files into `data/` next to this script (or `--out DIR`):

  seeds.jsonl  640 lines  {"input": <email>, "output": {"label": ..., "severity": ...}}
  evals.jsonl  100 lines  promptfoo-style tests whose inputs never occur in the seeds

Every email is made from templates: each scenario below has a label, a severity and several
phrasings of its subject and sentences, with slots (names, order numbers, amounts, dates, error
messages, ...) filled at random. Greetings, signatures, the odd typo and non-ASCII names are
mixed in so the inputs look like real mail. The output is a pure function of the seed
`random.Random(20261122)`: running the script twice gives byte-identical files.

The evals are held out by template, not only by text: every list of alternatives (subjects,
each sentence of a scenario, its optional sentences, greetings, context lines, closers,
signatures) is split, and the evals are written only from the last third of each list, the
seeds only from the rest (`part`). So no eval shares a phrasing with any seed, and a student
passes only by reading the mail. Closing lines are the same for every severity, so none gives
the answer away.

Severity follows fixed rules, so a student can learn it:

  critical  the service is down for everyone, data was lost, an account was taken over, or a
            whole team is cut off (e.g. suspended for non-payment although the invoice was paid)
  high      one customer is blocked with no workaround: a crash, a broken core feature, being
            charged twice or after cancelling, being locked out, a parcel lost in transit
  medium    a real problem with a workaround or a fix that can wait: an intermittent glitch,
            slowness, a wrong invoice, a refund request, a damaged or wrong item, a feature a
            renewal depends on, a data-protection request, a complaint about slow support
  low       a question or a suggestion: how-to, pricing, tracking, cosmetic glitches, feature
            ideas, praise, partnership and job enquiries

Usage:
  python3 gen_data.py              # (re)write data/seeds.jsonl and data/evals.jsonl
  python3 gen_data.py --out DIR    # write them into DIR instead
  python3 gen_data.py --check      # exit 1 if the committed files differ from a fresh run

Python 3.11 standard library only; no network.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import random
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SEED = 20261122
N_SEEDS = 640
# Seeds drawn before the evals (the example had 360 seeds once; see generate()).
N_SEEDS_FIRST = 360
N_EVALS = 100

LABELS = ["billing", "bug", "account", "feature_request", "shipping", "other"]
SEVERITIES = ["low", "medium", "high", "critical"]

# --------------------------------------------------------------------------------------------
# Slot vocabularies
# --------------------------------------------------------------------------------------------

# (full name, first name, email local part). Several deliberately non-ASCII.
CUSTOMERS = [
    ("José García", "José", "jose.garcia"),
    ("Zoë Müller", "Zoë", "zoe.mueller"),
    ("Søren Kjær", "Søren", "soren.kjaer"),
    ("Łukasz Nowak", "Łukasz", "lukasz.nowak"),
    ("Chloé Dubois", "Chloé", "chloe.dubois"),
    ("Renée O'Connor", "Renée", "renee.oconnor"),
    ("Björn Larsson", "Björn", "bjorn.larsson"),
    ("Ana Peña", "Ana", "ana.pena"),
    ("François Lefèvre", "François", "francois.lefevre"),
    ("Ayşe Yılmaz", "Ayşe", "ayse.yilmaz"),
    ("Nguyễn Thị Mai", "Mai", "mai.nguyen"),
    ("Siobhán Murphy", "Siobhán", "siobhan.murphy"),
    ("陈静", "陈静", "chen.jing"),
    ("Emily Carter", "Emily", "emily.carter"),
    ("Raj Patel", "Raj", "raj.patel"),
    ("Michael Chen", "Michael", "michael.chen"),
    ("Sarah O'Brien", "Sarah", "sarah.obrien"),
    ("David Kim", "David", "dkim"),
    ("Priya Sharma", "Priya", "priya.sharma"),
    ("Tom Walker", "Tom", "tom.walker"),
    ("Aisha Bello", "Aisha", "aisha.bello"),
    ("Kenji Tanaka", "Kenji", "k.tanaka"),
    ("Laura Rossi", "Laura", "laura.rossi"),
    ("Marcus Johnson", "Marcus", "marcus.j"),
    ("Hannah Schmidt", "Hannah", "hannah.schmidt"),
    ("Olu Adeyemi", "Olu", "olu.adeyemi"),
    ("Grace Liu", "Grace", "grace.liu"),
    ("Pedro Alves", "Pedro", "pedro.alves"),
    ("Fatima Zahra", "Fatima", "fatima.zahra"),
    ("Ben Cohen", "Ben", "ben.cohen"),
]
MAIL_DOMAINS = ["gmail.com", "outlook.com", "yahoo.com", "proton.me", "icloud.com", "fastmail.com"]
CUSTOMER_COMPANIES = [
    "Brightline Dental", "Kestrel Logistics", "Oakridge Realty", "Bluefin Studio", "Harbor & Pine",
    "Northwind Traders", "Café Lumière", "Fjordline AS", "Tandem Health", "Quarry Labs",
    "Maple Street Bakery", "Vértice Consultores",
]
PLANS = ["Starter", "Pro", "Team", "Business", "Pro annual", "Team annual"]
HARDWARE = [
    "Nimbus Hub", "Hub Mini", "Sensor Pack (3)", "Charging Dock", "Smart Plug", "Door Sensor",
    "Wall Mount Kit", "Nimbus Cam", "Motion Sensor",
]
FEATURES = [
    "the dashboard", "CSV export", "calendar sync", "the reports page", "file upload",
    "the search bar", "notifications", "the Slack integration", "PDF invoices", "the task board",
    "bulk import", "the mobile widget",
]
PLATFORMS = ["the iOS app", "the Android app", "the web app", "the Windows desktop app", "the Mac app"]
BROWSERS = ["Chrome", "Firefox", "Safari", "Edge"]
OSES = ["Windows 11", "macOS Sonoma", "Ubuntu 22.04", "iOS 17", "Android 14", "ChromeOS"]
ERRORS = [
    "Error 500: Internal Server Error",
    "502 Bad Gateway",
    "503 Service Unavailable",
    "ERR_CONNECTION_RESET",
    "TypeError: Cannot read properties of undefined (reading 'id')",
    "Something went wrong (code 0x80070005)",
    "Request timed out after 30s",
    "sync failed: conflict on record 4471",
    "Unexpected token < in JSON at position 0",
    "Error: upload aborted (413)",
    "NullPointerException in ReportBuilder",
    "E_QUOTA_EXCEEDED",
]
RECORDS = ["projects", "invoices", "customer records", "notes", "files", "tasks", "contacts"]
WISHES = [
    "dark mode", "export to Excel", "keyboard shortcuts", "recurring tasks", "a Gantt view",
    "bulk editing", "custom fields", "an offline mode", "an API endpoint for reports",
    "saved filters", "a weekly summary email", "emoji reactions on comments",
]
INTEGRATIONS = ["Salesforce", "HubSpot", "Zapier", "Microsoft Teams", "Google Sheets", "Jira", "Notion", "Xero"]
ENTERPRISE_NEEDS = [
    "SAML single sign-on", "audit logs", "EU data residency", "SCIM user provisioning",
    "role-based permissions", "an uptime SLA",
]
LOGIN_CITIES = ["Lagos", "São Paulo", "Kyiv", "Jakarta", "Bucharest", "Manila", "Hanoi", "Lima"]
COUNTRIES = ["Canada", "Norway", "Australia", "Brazil", "Japan", "Ireland", "Mexico", "South Africa", "Iceland"]
CARRIERS = ["UPS", "FedEx", "DHL", "USPS", "Royal Mail", "DPD", "PostNL"]
AGENTS = ["Maria", "Tariq", "Jenny", "Luis", "Amélie", "Sam", "Noor"]
TIMES = ["8am", "9:15", "this morning", "around noon", "2pm our time", "last night", "an hour ago"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
MONTHS_SHORT = [m[:3] for m in MONTHS]

# Common misspellings, applied to a few bodies (whole words, lower case only).
TYPOS = {
    "receive": "recieve", "received": "recieved", "the": "teh", "please": "pls",
    "account": "acount", "because": "becuase", "definitely": "definately", "until": "untill",
    "which": "wich", "really": "realy", "again": "agian", "address": "adress", "since": "sinse",
    "thanks": "thx", "tomorrow": "tommorow", "separate": "seperate", "know": "konw",
}


def _date(rng: random.Random) -> str:
    d = datetime.date(2025, 1, 1) + datetime.timedelta(days=rng.randint(0, 320))
    style = rng.randrange(4)
    if style == 0:
        return f"{MONTHS[d.month - 1]} {d.day}"
    if style == 1:
        return f"{d.day} {MONTHS_SHORT[d.month - 1]}"
    if style == 2:
        return d.isoformat()
    return f"{d.month:02d}/{d.day:02d}/{d.year}"


def _amount(rng: random.Random, sym: str) -> str:
    value = rng.choice([9, 12, 19, 24, 29, 49, 59, 79, 99, 119, 149, 199, 240, 480, 960])
    cents = rng.choice([".00", ".00", ".99", ".50"])
    return f"{sym}{value}{cents}"


def slots(rng: random.Random) -> dict[str, str]:
    """One email's slot values. Every slot is drawn every time, so the RNG stream (and thus the
    output) does not depend on which slots a template happens to use."""
    full, first, local = rng.choice(CUSTOMERS)
    hw, hw2 = rng.sample(HARDWARE, 2)
    currency = rng.choice(["$", "$", "€", "£", "USD "])
    amount = _amount(rng, currency)
    amount2 = _amount(rng, currency)
    while amount2 == amount:
        amount2 = _amount(rng, currency)
    major, minor, patch = rng.randint(3, 5), rng.randint(0, 14), rng.randint(0, 9)
    return {
        "full": full,
        "first": first,
        "email": f"{local}@{rng.choice(MAIL_DOMAINS)}",
        "company": rng.choice(CUSTOMER_COMPANIES),
        "plan": rng.choice(PLANS),
        "hw": hw,
        "hw2": hw2,
        "feature": rng.choice(FEATURES),
        "platform": rng.choice(PLATFORMS),
        "browser": rng.choice(BROWSERS),
        "os": rng.choice(OSES),
        "error": rng.choice(ERRORS),
        "records": rng.choice(RECORDS),
        "wish": rng.choice(WISHES),
        "integration": rng.choice(INTEGRATIONS),
        "need": rng.choice(ENTERPRISE_NEEDS),
        "city": rng.choice(LOGIN_CITIES),
        "country": rng.choice(COUNTRIES),
        "carrier": rng.choice(CARRIERS),
        "agent": rng.choice(AGENTS),
        "time": rng.choice(TIMES),
        "order": rng.choice(["#", "#", "ORD-", "NB-"]) + str(rng.randint(10000, 99999)),
        "invoice": f"INV-{rng.randint(1000, 9999)}",
        "ticket": f"#{rng.randint(200000, 299999)}",
        "amount": amount,
        "amount2": amount2,
        "date": _date(rng),
        "date2": _date(rng),
        "last4": f"{rng.randint(0, 9999):04d}",
        "version": f"{major}.{minor}.{patch}",
        "n_users": str(rng.choice([8, 12, 25, 40, 60, 120, 300])),
        "count": str(rng.choice([2, 3, 5, 10, 15, 20])),
        "big": str(rng.choice([140, 300, 850, 1200, 2400, 5000])),
        "seconds": str(rng.choice([15, 20, 30, 45, 60, 90])),
        "days": str(rng.choice([3, 4, 5, 6, 8, 10])),
        "weeks": str(rng.choice([2, 3, 4, 5])),
        "year": str(rng.choice([2018, 2019, 2020, 2021, 2022, 2023])),
    }


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    label: str
    severity: str
    desc: str                 # short eval description
    subjects: list[str]
    core: list[list[str]]     # required sentences, one list of alternatives per sentence
    extra: list[list[str]]    # optional sentences (0-2 of them are used)
    weight: int = 1           # relative frequency among its label's scenarios in the seeds


def sc(label, severity, desc, subjects, core, extra=(), weight=1) -> Scenario:
    return Scenario(label, severity, desc, list(subjects), [list(c) for c in core], [list(e) for e in extra], weight)


SCENARIOS: list[Scenario] = [
    # ---------------------------------------------------------------- billing
    sc("billing", "high", "charged twice",
       ["Charged twice for my {plan} subscription", "Double charge on my card",
        "duplicate payment - please refund", "I was billed two times", "Charged twice this month"],
       [["I was charged twice for my {plan} subscription on {date}.",
         "My card ending in {last4} shows two identical charges of {amount} from {date}.",
         "You billed me {amount} two times this month for the same {plan} renewal.",
         "There are two charges of {amount} on my statement for {date}, but I only have one subscription."],
        ["Please refund the duplicate payment as soon as possible.",
         "I need the extra charge reversed, it pushed my bank account into overdraft.",
         "Only one of them should be there, so please refund the other one.",
         "Please reverse the second charge."]],
       [["I checked and I only have one workspace with you."],
        ["My bank says the charges are not pending, they went through."]],
       weight=3),
    sc("billing", "high", "charged after cancelling",
       ["Charged after I cancelled", "Still being billed after cancellation", "Why am I still being charged??",
        "Unauthorized charge after cancelling"],
       [["I cancelled my {plan} plan on {date} but you charged me {amount} again on {date2}.",
         "I closed my account on {date} and today I see a new charge of {amount} on my card ending {last4}.",
         "Even though I cancelled my subscription, my card was charged {amount} on {date2}."],
        ["I did not authorize this charge and I want it refunded.",
         "Please refund it and make sure I am not charged again.",
         "This charge is unauthorized, please reverse it."]],
       [["I still have the cancellation confirmation email."],
        ["I will dispute it with my bank if it is not fixed."]],
       weight=2),
    sc("billing", "critical", "suspended despite payment",
       ["URGENT: whole team locked out, account suspended", "Account suspended for non-payment but we paid",
        "Service suspended - invoice already paid", "Entire company cut off because of billing"],
       [["Our workspace was suspended for non-payment this morning, but invoice {invoice} for {amount} was paid on {date}.",
         "You suspended our company account for non-payment even though we paid invoice {invoice} on {date}.",
         "All {n_users} of our users are locked out because the account shows as unpaid, but the payment of {amount} went through on {date}."],
        ["Our whole team is locked out and cannot work right now.",
         "Nobody at {company} can access anything until this is fixed.",
         "All {n_users} people on our team are blocked."],
        ["I can send the bank transfer receipt.", "The payment reference is {invoice}."]],
       [["Please restore access immediately, we are losing business every hour."]],
       weight=2),
    sc("billing", "medium", "wrong invoice amount",
       ["Invoice {invoice} amount is wrong", "Incorrect amount on my invoice", "Billing error on {invoice}",
        "wrong price on invoice"],
       [["Invoice {invoice} says {amount} but my {plan} plan costs {amount2}.",
         "I was billed {amount} on {date} but the price on your website for the {plan} plan is {amount2}.",
         "My latest invoice ({invoice}) still charges for {count} seats that we removed on {date2}."],
        ["Could you correct it and send me an updated invoice?",
         "Please fix the invoice and refund the difference.",
         "Can you check what happened and adjust it?"]],
       [["Our accounting team needs the corrected invoice by the end of the month."],
        ["It looks like the old price was used."]],
       weight=2),
    sc("billing", "medium", "refund request",
       ["Refund request", "Requesting a refund for {plan}", "Refund please",
        "Can I get my money back?"],
       [["I bought the {plan} plan on {date} by mistake and would like a refund of {amount}.",
         "I upgraded to {plan} on {date} but it does not fit our needs, so I'd like a refund.",
         "We renewed automatically on {date} for {amount} and we no longer use the product."],
        ["I have not used any of the paid features.", "Please refund it to the original card.",
         "Could you process the refund?"]],
       [["I already downgraded the workspace."], ["Thank you for understanding."]]),
    sc("billing", "low", "invoice question",
       ["Question about invoices", "Invoice question", "Quick billing question",
        "invoices", "Question about receipts"],
       [["Where can I download the invoice for my payment on {date}?",
         "How do I add our VAT number to future invoices?",
         "Is it possible to get the receipts for {year} as a single PDF?",
         "Can invoices be sent to our accounting address instead of mine?"],
        ["I looked in the settings but couldn't find it.", "I need it for our bookkeeping.",
         "Just want to make sure I'm looking in the right place."]],
       [["I'm on the {plan} plan."]],
       weight=2),
    sc("billing", "low", "pricing question",
       ["Question about pricing", "Pricing question", "Plans and prices",
        "Quick question before we upgrade"],
       [["What would it cost to add {count} more seats to our {plan} plan?",
         "Do you offer a discount for nonprofits or schools?",
         "Is there a price difference between paying monthly and yearly for {plan}?",
         "Does the {plan} plan include {feature}, or is that an add-on?"],
        ["We're thinking about upgrading next quarter.", "Just trying to plan our budget.",
         "No rush on this."]],
       [["We're a small team of {count} people."]]),
    sc("billing", "low", "update payment method",
       ["Payment method", "How to change payment method", "Question about paying"],
       [["How do I update the credit card on file before my next renewal?",
         "My card ending in {last4} expires soon, where do I add the new one?",
         "Can we switch from card payments to bank transfer?"],
        ["The next payment is due on {date}.", "I couldn't find the option in billing settings."]]),

    # ---------------------------------------------------------------- bug
    sc("bug", "critical", "outage for all users",
       ["URGENT: {feature} down for all users", "Outage - whole team affected", "Site down for everyone",
        "Nimbus is down?!", "Production down, nobody can work"],
       [["Since {time} the app is down for all users in our company.",
         "Nothing loads for anyone on our team; every page returns {error}.",
         "The service is completely down for all {n_users} of our users.",
         "None of our {n_users} users can open the app since {time}, every request fails with {error}."],
        ["This is blocking our entire team.", "We checked from several networks and it's the same everywhere.",
         "Your status page still says everything is operational."],
        ["Please escalate this right away.", "We need someone on this now."]],
       [["We are on the {plan} plan."]],
       weight=2),
    sc("bug", "critical", "data loss",
       ["Data loss after update", "All my {records} are gone", "URGENT - {records} deleted",
        "Lost data after sync", "data loss!!"],
       [["After updating to {version}, all of our {records} disappeared.",
         "This morning {big} {records} were simply gone from our workspace.",
         "A sync at {time} wiped our {records}, and the trash is empty.",
         "We have lost {big} {records} after the app showed {error}."],
        ["This is permanent data loss for us, and we have no other copy.",
         "This data loss affects our whole team.", "We cannot recover the data ourselves."],
        ["Please restore from a backup immediately.", "Please escalate this as an emergency."]],
       [["The last time everything was there was {date}."]]),
    sc("bug", "high", "crash on open",
       ["App keeps crashing", "{platform} keeps crashing", "Crash when opening {feature}",
        "crash every time", "Can't use the app - crashes"],
       [["{platform} crashes every time I open {feature}.",
         "Since version {version}, {platform} closes immediately after I tap {feature}.",
         "Whenever I open {feature}, {platform} freezes and then crashes."],
        ["I can't use it at all and there is no workaround.",
         "I reinstalled the app and restarted my phone, but it still crashes.",
         "I need this for work every day, so I'm completely blocked."]],
       [["I'm using {os}."], ["It started after the last update."]],
       weight=2),
    sc("bug", "high", "core feature broken",
       ["{feature} not working", "{feature} fails with an error", "Error: {error}",
        "Broken: {feature}"],
       [["{feature} fails every time with \"{error}\".",
         "I can't use {feature} anymore; it always shows {error}.",
         "Every attempt to use {feature} ends with {error}."],
        ["I can't get my work done and there is no workaround.",
         "I tried another browser and cleared the cache, with the same result.",
         "Our monthly report is due on {date} and I'm completely blocked."]],
       [["I'm on {browser} on {os}."], ["It worked fine until {date}."]],
       weight=2),
    sc("bug", "medium", "intermittent glitch",
       ["Intermittent error in {feature}", "{feature} sometimes fails", "Random errors",
        "Glitch with {feature}"],
       [["{feature} sometimes shows {error}, but it works after a retry.",
         "About once a day {feature} fails with {error}; refreshing the page fixes it.",
         "Every now and then {feature} doesn't update until I log out and back in."],
        ["It's annoying but I can work around it.", "Not blocking, but it keeps happening.",
         "Could you look into it?"]],
       [["I'm on {browser} on {os}."], ["It started around {date}."]],
       weight=2),
    sc("bug", "medium", "slow performance",
       ["{feature} is very slow", "Performance problem", "Slow loading times",
        "Everything has become slow"],
       [["{feature} now takes about {seconds} seconds to load.",
         "Since the {version} release {feature} has become very slow.",
         "Opening {feature} takes {seconds} seconds, it used to be instant."],
        ["It still works, just slowly.", "We can live with it for now but it's frustrating.",
         "Could you check whether something changed?"]],
       [["We have about {big} {records} in the workspace."], ["I'm using {browser}."]]),
    sc("bug", "low", "cosmetic issue",
       ["Minor UI glitch", "Small visual bug", "cosmetic issue", "Tiny display bug"],
       [["There's a typo on the settings page: it says \"Notifcations\".",
         "In dark mode the save button overlaps the text on {feature}.",
         "The date on {feature} shows in the wrong format, e.g. {date2}.",
         "The icon next to {feature} is slightly blurry on my screen."],
        ["Not urgent, just thought you should know.", "Everything works, it just looks a bit off.",
         "Purely cosmetic."]],
       [["I'm using {browser} on {os}."]],
       weight=2),

    # ---------------------------------------------------------------- account
    sc("account", "critical", "account compromised",
       ["Account hacked", "Someone logged into my account", "Unauthorized access to my account",
        "URGENT: account compromised", "my account was hacked!!"],
       [["I think my account was hacked: I got a login alert from {city} and my email address was changed.",
         "Someone else has access to my account, it shows an active session from {city} that isn't me.",
         "My account was compromised at {time}; the password and recovery email were changed without me.",
         "There is an unknown login from {city} on my account and my {records} are being deleted."],
        ["Please lock the account immediately.", "Please secure my account right now.",
         "The account holds client data, so this is an emergency."]],
       [["My original email was {email}."], ["I did not share my password with anyone."]],
       weight=2),
    sc("account", "high", "locked out",
       ["Locked out of my account", "Can't log in", "Lost my 2FA device", "Password reset not working",
        "cannot access my account"],
       [["I'm locked out of my account after too many login attempts.",
         "I lost my phone and now I can't get past two-factor authentication.",
         "I can't log in and the password reset email never arrives.",
         "My login stopped working on {date} and the reset link says it is invalid."],
        ["I need access today for a client deadline.", "I've tried for two days and I'm completely stuck.",
         "I have no way to get into my account."]],
       [["My account email is {email}."], ["I checked the spam folder too."]],
       weight=2),
    sc("account", "medium", "email change failing",
       ["Problem with my account settings", "Account settings not working",
        "Can't update my account details", "Account problem"],
       [["I'm trying to change my login email to {email}, but the verification link always says expired.",
         "I accidentally created two accounts and would like them merged into {email}.",
         "When I change my username the page says saved, but it reverts after a reload."],
        ["I can still log in with the old details for now.", "Could you help me sort this out?",
         "Please let me know what to do."]],
       [["I've tried three times already."]]),
    sc("account", "low", "how-to account question",
       ["Question about my account", "Account question", "Quick question",
        "How do I do this?", "question about settings"],
       [["How do I change the email address on my account?",
         "Is it possible to rename our workspace?",
         "How do I make a colleague an admin?",
         "How do I invite {count} teammates to our workspace?",
         "Can I have two-factor authentication on an authenticator app instead of SMS?"],
        ["I couldn't find it in the settings.", "Thanks in advance.", "Just want to do it the right way."]],
       [["I'm on the {plan} plan."]],
       weight=2),

    # ---------------------------------------------------------------- feature_request
    sc("feature_request", "low", "feature idea",
       ["Feature request: {wish}", "Suggestion: {wish}", "Idea for the app", "Would love {wish}",
        "feature request"],
       [["It would be great if the app supported {wish}.",
         "Any plans to add {wish}?",
         "Please consider adding {wish}.",
         "I'd love to see {wish} in a future update."],
        ["It would save me a lot of time every week.", "Otherwise I really like the product.",
         "Several people on my team have asked for it."]],
       [["We use {feature} every day."]],
       weight=3),
    sc("feature_request", "low", "integration request",
       ["{integration} integration?", "Request: integrate with {integration}", "Integration suggestion",
        "Please add {integration}"],
       [["Could you add an integration with {integration}?",
         "Do you plan to support {integration}?",
         "It would be really useful to sync {records} with {integration}."],
        ["Right now we copy things over by hand.", "Zapier works, but a native integration would be nicer.",
         "Happy to beta test it."]],
       [["We're a team of {count} people."]],
       weight=2),
    sc("feature_request", "medium", "feature needed for renewal",
       ["{need} needed before renewal", "Requirement: {need}", "Security team requires {need}",
        "Blocking our renewal: {need}"],
       [["We need {need} before our renewal on {date}, our security team requires it.",
         "Our compliance review says we must have {need} by {date}.",
         "Without {need} we may have to move {n_users} users to another vendor at renewal."],
        ["Is it on your roadmap, and roughly when?", "Please let us know if there's a timeline.",
         "We'd like to stay, so any information helps."]],
       [["We're on the {plan} plan."]]),

    # ---------------------------------------------------------------- shipping
    sc("shipping", "high", "parcel lost",
       ["Order {order} never arrived", "Package marked delivered but not received", "Lost package",
        "Where is my order {order}?", "order missing"],
       [["My order {order} was marked as delivered on {date}, but I never received it.",
         "Order {order} still hasn't arrived after {weeks} weeks, and tracking hasn't updated since {date}.",
         "{carrier} says order {order} was delivered, but there is nothing at my door or with my neighbours."],
        ["I paid {amount} and have nothing to show for it.", "Please send a replacement or refund me.",
         "I need the {hw} for an installation this week."]],
       [["I already contacted {carrier} and they told me to contact you."]],
       weight=2),
    sc("shipping", "medium", "damaged item",
       ["Item arrived damaged", "Broken {hw}", "Damaged package", "{hw} cracked on arrival"],
       [["The {hw} from order {order} arrived with a cracked casing.",
         "My package arrived crushed and the {hw} inside doesn't turn on.",
         "Order {order} came today but the {hw} was damaged in transit."],
        ["Could you send a replacement?", "I have photos if you need them.",
         "What's the process for an exchange?"]],
       [["The box itself looked fine from the outside."]],
       weight=2),
    sc("shipping", "medium", "wrong item",
       ["Wrong item received", "Received the wrong product", "Order {order} - wrong item",
        "Not what I ordered"],
       [["I ordered a {hw} but received a {hw2}.",
         "Order {order} contained a {hw2} instead of the {hw} I paid for.",
         "The packing slip says {hw}, but the box contains a {hw2}."],
        ["Can you send the right one and a return label?", "How do I exchange it?",
         "Please let me know how to return it."]]),
    sc("shipping", "low", "tracking or delivery question",
       ["Question about my order", "Delivery question", "Shipping question",
        "Question about delivery", "order {order}"],
       [["Could you send me the tracking number for order {order}?",
         "When will order {order} ship?",
         "Do you ship the {hw} to {country}?",
         "Can I still change the delivery address for order {order}?",
         "Which carrier do you use for deliveries to {country}?"],
        ["No rush, just planning ahead.", "Thanks!", "I placed it on {date}."]],
       weight=2),

    # ---------------------------------------------------------------- other
    sc("other", "low", "praise",
       ["Thank you!", "Great support", "Kudos to your team", "Just a thank you", "love the product"],
       [["Just wanted to say thanks, {agent} from your team was super helpful yesterday.",
         "We've been using the app since {year} and it keeps getting better.",
         "{agent} solved my problem in ten minutes, please pass on my thanks."],
        ["Keep up the great work.", "No action needed.", "You made my week."]],
       weight=2),
    sc("other", "low", "partnership or sales enquiry",
       ["Enquiry", "Hello from {company}", "Quick enquiry", "A question for your team"],
       [["I'm with {company} and we're interested in reselling your hardware in {country}.",
         "I'm writing an article about small-business tools and would like to interview someone from your team.",
         "We'd like to invite someone from Nimbus to speak at our meetup on {date}.",
         "Are you hiring support staff in {country}, and where can I apply?"],
        ["Who would be the right person to talk to?", "Happy to set up a call.", "Thanks for your time."]],
       weight=2),
    sc("other", "medium", "data protection request",
       ["GDPR request", "Personal data request", "Data protection request",
        "Request under GDPR"],
       [["Under the GDPR I request a copy of all personal data you hold about me.",
         "Please delete all personal data you have about me, including from backups.",
         "I'd like to exercise my right to erasure for the account {email}."],
        ["Please confirm within the legal deadline.", "Please confirm once this is done.",
         "I no longer use the service."]]),
    sc("other", "medium", "complaint about support",
       ["Still waiting for a reply", "No response to ticket {ticket}", "Disappointed with support",
        "Complaint"],
       [["I've been waiting {days} days for a reply to ticket {ticket}.",
         "This is my third email about the same thing and nobody has answered.",
         "I was promised a callback on {date} that never happened."],
        ["This is really not the service I expected.", "Please have someone get back to me.",
         "I'd appreciate an answer this week."]]),
]

# More phrasings for each scenario's sentences, appended to its lists (so some of them fall in
# the evals' share): the more ways the seeds say a thing, the more a student must learn what
# is said rather than how. Keyed by (label, desc); one list per core sentence.
MORE_PHRASINGS: dict[tuple[str, str], list[list[str]]] = {
    ("billing", "charged twice"): [
        ["The {plan} renewal went through twice on {date}, {amount} each time.",
         "I see the same {amount} payment to Nimbus twice on my card ending in {last4}.",
         "Your system took {amount} from my account two times for a single subscription."],
        ["I need the second payment returned to my card.", "Please give me back the money for the duplicate."],
    ],
    ("billing", "charged after cancelling"): [
        ["My subscription was cancelled on {date}, yet {amount} was taken from my card on {date2}.",
         "After cancelling the {plan} plan I was billed {amount} anyway.",
         "I ended my subscription last month but you still took {amount} on {date2}."],
        ["I want my money back for a plan I no longer have.", "Please return the money and stop billing me."],
    ],
    ("billing", "suspended despite payment"): [
        ["Our company workspace is blocked as unpaid, although we paid {amount} for invoice {invoice} on {date}.",
         "Everyone at {company} lost access this morning because you marked invoice {invoice} unpaid, but it was paid.",
         "The account of our whole organisation was frozen for an invoice we settled on {date}."],
        ["Not a single person on our team can log in.", "The entire company is unable to work."],
    ],
    ("billing", "wrong invoice amount"): [
        ["The total on invoice {invoice} is {amount}, but our plan should cost {amount2}.",
         "My invoice for {date} charges {amount} instead of the {amount2} we agreed.",
         "Invoice {invoice} bills us for {count} extra seats we never added."],
        ["Please send a corrected invoice when you can.", "Could someone review the amount and fix it?"],
    ],
    ("billing", "refund request"): [
        ["I'd like my money back for the {plan} plan I bought on {date}, it isn't what we need.",
         "Could I get a refund of {amount} for the renewal on {date}? We stopped using Nimbus.",
         "We were charged {amount} on {date} for a year we won't use, so we'd like a refund."],
        ["We only signed up a few days ago.", "I'd appreciate the refund going back to my card."],
    ],
    ("billing", "invoice question"): [
        ["Could you tell me where past invoices are kept in the dashboard?",
         "Can I change the company name that appears on our invoices?",
         "Is there a way to get invoices emailed to a second address automatically?"],
        ["Our accountant asked me for it.", "It's just for our records."],
    ],
    ("billing", "pricing question"): [
        ["How much would the {plan} plan cost for a team of {count}?",
         "Is there a yearly discount on the {plan} plan?",
         "What is the price per extra seat on {plan}?"],
        ["We're comparing a few tools at the moment.", "Just gathering information for now."],
    ],
    ("billing", "update payment method"): [
        ["Where do I replace the card we pay with?",
         "We got a new company card, how do I switch the payment to it?",
         "Can I pay by invoice instead of by card from now on?"],
        ["Our current card expires at the end of the month.", "I don't see where to change it."],
    ],
    ("bug", "outage for all users"): [
        ["The whole app has been unreachable for everyone in our company since {time}.",
         "Every one of our {n_users} users gets {error} on every page right now.",
         "Nimbus is down for our entire organisation, nobody can log in or load anything."],
        ["All of our teams are stopped.", "It's the same on every device and every network we tried."],
    ],
    ("bug", "data loss"): [
        ["Our {records} vanished overnight, {big} of them, and they are not in the trash.",
         "Since the update to {version} our workspace shows no {records} at all.",
         "Everything we stored in {records} since {date} has been erased."],
        ["We have no backup of our own.", "Years of work are missing."],
    ],
    ("bug", "crash on open"): [
        ["{platform} shuts down the moment I open {feature}.",
         "Each time I go to {feature}, {platform} crashes and returns me to the home screen.",
         "After the {version} update, {platform} crashes as soon as it starts."],
        ["I cannot do my job in the app at all.", "Nothing I try stops it from crashing."],
    ],
    ("bug", "core feature broken"): [
        ["{feature} stopped working for me, it only shows {error}.",
         "Nothing happens when I use {feature}, apart from the message {error}.",
         "{feature} has been broken since {date}, every try gives {error}."],
        ["There is no other way for me to get this done.", "I'm stuck until this works again."],
    ],
    ("bug", "intermittent glitch"): [
        ["Once in a while {feature} shows {error}, then works when I try again.",
         "{feature} fails now and then, but a reload always fixes it.",
         "A few times a week {feature} hangs for a moment and then recovers."],
        ["It's not stopping me from working.", "I can live with it, but it would be nice to have it fixed."],
    ],
    ("bug", "slow performance"): [
        ["Loading {feature} now takes {seconds} seconds every time.",
         "{feature} has become sluggish since the {version} update.",
         "Pages in {feature} take ages to appear, about {seconds} seconds."],
        ["Everything works, it's just slow.", "We can keep working, only more slowly."],
    ],
    ("bug", "cosmetic issue"): [
        ["A label on {feature} is cut off on small screens.",
         "The colours of the buttons on {feature} look wrong in dark mode.",
         "There is a spelling mistake in the footer of {feature}."],
        ["Nothing is broken, it just looks odd.", "Low priority, only wanted to mention it."],
    ],
    ("account", "account compromised"): [
        ["Someone got into my account from {city} and changed my password.",
         "An intruder took over my account at {time} and locked me out of my own email settings.",
         "I see logins from {city} that were not me, and my recovery email was replaced."],
        ["Please freeze the account now.", "There is client data in it, so this is an emergency."],
    ],
    ("account", "locked out"): [
        ["I can't get into my account since {date}, the login keeps failing.",
         "My two-factor codes are rejected, so I cannot sign in at all.",
         "The reset link you send never works, so I have no way into my account."],
        ["I have a deadline today and no access.", "Please help me get back in."],
    ],
    ("account", "email change failing"): [
        ["Changing my email to {email} fails every time with a confirmation error.",
         "My profile name keeps going back to the old one after I save it.",
         "I'd like my two accounts combined into the one at {email}."],
        ["I can still work in the meantime.", "It's not urgent, but please advise."],
    ],
    ("account", "how-to account question"): [
        ["How can I give a teammate admin rights?",
         "Where do I change my display name?",
         "How do I remove a former colleague from our workspace?"],
        ["Couldn't see it in the help pages.", "Thanks for any pointers."],
    ],
    ("feature_request", "feature idea"): [
        ["Have you thought about offering {wish}?",
         "My wish for the next release: {wish}.",
         "Adding {wish} would make the app even better."],
        ["Just an idea from a happy user.", "It would make our days a bit easier."],
    ],
    ("feature_request", "integration request"): [
        ["Is a connector for {integration} on the roadmap?",
         "We'd love Nimbus to talk to {integration} directly.",
         "Please build an integration with {integration}."],
        ["It would save us a lot of copying by hand.", "Many teams like ours use {integration}."],
    ],
    ("feature_request", "feature needed for renewal"): [
        ["We can only renew on {date} if Nimbus supports {need} by then.",
         "{need} is a hard requirement from our IT team for the renewal.",
         "Our contract renews on {date}, and our auditors insist on {need}."],
        ["Can you share when it is planned?", "Is there a date we can plan around?"],
    ],
    ("shipping", "parcel lost"): [
        ["The tracking for order {order} says delivered, but no parcel ever came.",
         "My {hw} from order {order} seems lost, it's been {weeks} weeks.",
         "{carrier} lost my package for order {order}."],
        ["I need a new one sent or my money back.", "I have paid and received nothing."],
    ],
    ("shipping", "damaged item"): [
        ["The {hw} in order {order} was broken when I opened the box.",
         "My {hw} arrived with a bent connector and won't charge.",
         "The screen of the {hw} from order {order} is cracked."],
        ["Can I get it exchanged?", "I can send pictures of the damage."],
    ],
    ("shipping", "wrong item"): [
        ["Instead of the {hw} I ordered, the box had a {hw2}.",
         "You sent a {hw2}, but order {order} was for a {hw}.",
         "The item in order {order} is not what I bought: a {hw2} rather than a {hw}."],
        ["Please send the correct item.", "How can I swap it for the right one?"],
    ],
    ("shipping", "tracking or delivery question"): [
        ["Has order {order} shipped yet?",
         "Can you deliver the {hw} to {country}?",
         "How long does shipping to {country} usually take?"],
        ["Just curious, no rush.", "Thanks a lot."],
    ],
    ("other", "praise"): [
        ["A big thank you to {agent}, who sorted out my issue so quickly.",
         "Your app has made running our team so much easier.",
         "I just wanted to say how much we enjoy using Nimbus."],
        ["Nothing to fix, just a thank you.", "Have a great day."],
    ],
    ("other", "partnership or sales enquiry"): [
        ["{company} would like to discuss a partnership with Nimbus.",
         "I'm a journalist and would love to talk to your founders for a story.",
         "Do you have any open positions in customer support?"],
        ["Who should I contact about this?", "Looking forward to hearing from you."],
    ],
    ("other", "data protection request"): [
        ["Please send me an export of every piece of personal data you store about me.",
         "I'm asking you to erase my personal information under data protection law.",
         "Under GDPR article 15 I'd like to know what data you hold on {email}."],
        ["Please confirm when it's done.", "I expect an answer within the legal time limit."],
    ],
    ("other", "complaint about support"): [
        ["Nobody from your support team has answered my ticket {ticket} in {days} days.",
         "I keep writing to support and nobody replies.",
         "Your agent promised to call me back on {date} and never did."],
        ["I'm disappointed with how this has been handled.", "I'd like someone to finally reply."],
    ],
}

for _s in SCENARIOS:
    for _core, _more in zip(_s.core, MORE_PHRASINGS.get((_s.label, _s.desc), [])):
        _core.extend(_more)

GREETINGS = [
    "Hi,", "Hello,", "Hi there,", "Hello support team,", "Dear Nimbus Support,", "Hey,",
    "Good morning,", "Hi team,", "Dear Sir or Madam,", "Hello Nimbus,", "Hi all,",
]
SIGNATURES = [
    "Thanks,\n{first}", "Best regards,\n{full}", "Cheers,\n{first}", "{full}\n{company}",
    "Regards,\n{full}", "Thank you,\n{full}\n{email}", "Kind regards,\n{full}\n{company}",
    "Sent from my iPhone", "-- \n{full}", "Thanks\n{first}\n\nSent from my phone", "{first}",
]
CONTEXT = [  # (sentence, the slot it states)
    ("My account email is {email}.", "email"), ("I'm on the {plan} plan.", "plan"),
    ("We've been customers since {year}.", "year"), ("I work at {company}.", "company"),
]
# Closing lines, the same for every severity: a closer chosen by severity would let a student
# learn the closer instead of the mail.
CLOSERS = [
    "Thanks!", "Thanks in advance.", "Thanks for your help.", "Please let me know.",
    "Appreciate it.", "Looking forward to your reply.", "Many thanks.", "Talk soon.",
]


def part(alts: list, held_out: bool) -> list:
    """The share of a list of alternatives an email may use. The evals' share (the last third,
    at least one) never occurs in the seeds, so the evals test the task on phrasings the student
    has not seen, not its memory of sentences. A list of one belongs to the seeds."""
    n = len(alts)
    k = max(1, n // 3) if n >= 2 else 0
    return alts[n - k:] if held_out else alts[:n - k]


def _typo(rng: random.Random, text: str) -> str:
    words = [w for w in TYPOS if re.search(rf"\b{w}\b", text)]
    if not words:
        return text
    w = rng.choice(words)
    return re.sub(rf"\b{w}\b", TYPOS[w], text, count=1)


def _cap(sentence: str) -> str:
    """A sentence that starts with a slot such as "the dashboard" still starts with a capital."""
    return sentence[0].upper() + sentence[1:]


def compose(rng: random.Random, s: Scenario, held_out: bool = False) -> str:
    """One email for scenario `s`, from the seeds' share of every list of alternatives, or with
    `held_out` from the evals' share (see `part`)."""
    def pick(alts: list):
        return rng.choice(part(alts, held_out))

    v = slots(rng)
    subject = pick(s.subjects).format(**v)
    subject = _cap(subject)
    r = rng.random()
    if r < 0.07:
        subject = "Re: " + subject
    elif r < 0.10:
        subject = "Fwd: " + subject
    elif r < 0.15:
        subject = subject.lower()

    sentences = [_cap(pick(alts).format(**v)) for alts in s.core]
    extra = part(s.extra, held_out)
    n_extra = rng.choice([0, 0, 1, 1, 2]) if extra else 0
    for alts in rng.sample(extra, min(n_extra, len(extra))):
        sentences.insert(rng.randint(1, len(sentences)), _cap(rng.choice(alts).format(**v)))
    # Context and closing lines, never repeating a fact or a sentence already in the body.
    if len(sentences) < 6 and rng.random() < 0.25:
        fresh = [c for c, slot in part(CONTEXT, held_out) if v[slot] not in " ".join(sentences)]
        if fresh:
            sentences.insert(1, rng.choice(fresh).format(**v))
    if len(sentences) < 6 and rng.random() < 0.45:
        fresh = [c for c in part(CLOSERS, held_out) if c not in sentences]
        sentences.append(rng.choice(fresh))
    sentences = sentences[:6]

    if len(sentences) >= 4 and rng.random() < 0.4:
        cut = rng.randint(2, len(sentences) - 1)
        body = " ".join(sentences[:cut]) + "\n\n" + " ".join(sentences[cut:])
    else:
        body = " ".join(sentences)
    if rng.random() < 0.12:
        body = _typo(rng, body)
    if rng.random() < 0.06:
        body = body[0].lower() + body[1:]

    r = rng.random()
    if r < 0.2:
        greeting = ""
    elif r < 0.35:
        greeting = pick(GREETINGS) + " "
    else:
        greeting = pick(GREETINGS) + "\n\n"
    sig = "" if rng.random() < 0.15 else "\n\n" + pick(SIGNATURES).format(**v)
    return f"Subject: {subject}\n\n{greeting}{body}{sig}"


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


def _key(text: str) -> str:
    """Near-duplicate key: case, whitespace and punctuation are ignored."""
    return " ".join(re.sub(r"[^\w]+", " ", text.lower()).split())


def _unique(rng: random.Random, s: Scenario, seen: set[str], held_out: bool = False) -> str:
    for _ in range(1000):
        text = compose(rng, s, held_out)
        k = _key(text)
        if k not in seen:
            seen.add(k)
            return text
    raise RuntimeError(f"could not find a new email for scenario {s.label}/{s.desc}")


def _draw_seeds(rng: random.Random, by_label: dict, seen: set[str], first: int, n: int) -> list[dict]:
    """`n` seeds, an equal share per label (round-robin from seed number `first`), scenarios
    weighted within a label, shuffled."""
    seeds = []
    for i in range(first, first + n):
        label = LABELS[i % len(LABELS)]
        options = by_label[label]
        s = rng.choices(options, weights=[o.weight for o in options])[0]
        text = _unique(rng, s, seen)
        seeds.append({"input": text, "output": {"label": s.label, "severity": s.severity}})
    rng.shuffle(seeds)
    return seeds


def generate() -> tuple[list[dict], list[dict]]:
    rng = random.Random(SEED)
    by_label = {label: [s for s in SCENARIOS if s.label == label] for label in LABELS}
    seen: set[str] = set()  # membership only; never iterated, so hash seeds do not matter

    seeds = _draw_seeds(rng, by_label, seen, 0, N_SEEDS_FIRST)

    # Evals: labels round-robin, and each label's scenarios round-robin, so every scenario (and
    # so every label/severity pair that exists) is tested. Inputs are new: `seen` holds the seeds.
    evals = []
    counters = {label: 0 for label in LABELS}
    for i in range(N_EVALS):
        label = LABELS[i % len(LABELS)]
        options = by_label[label]
        s = options[counters[label] % len(options)]
        counters[label] += 1
        text = _unique(rng, s, seen, held_out=True)
        evals.append({
            "description": f"{s.label}/{s.severity}: {s.desc}",
            "vars": {"input": text},
            "assert": [
                {"type": "is-json"},
                {"type": "equals", "value": {"label": s.label, "severity": s.severity}},
            ],
        })
    rng.shuffle(evals)

    # The rest of the seeds come after the evals, so the evals are the ones every earlier
    # result in the README was measured on. `seen` now holds the evals too.
    seeds += _draw_seeds(rng, by_label, seen, N_SEEDS_FIRST, N_SEEDS - N_SEEDS_FIRST)
    return seeds, evals


def to_jsonl(rows: list[dict]) -> bytes:
    lines = [json.dumps(r, ensure_ascii=False, separators=(", ", ": ")) for r in rows]
    return ("\n".join(lines) + "\n").encode("utf-8")


def write(out: Path) -> dict[str, bytes]:
    seeds, evals = generate()
    files = {"seeds.jsonl": to_jsonl(seeds), "evals.jsonl": to_jsonl(evals)}
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    return files


def _describe(path: Path, data: bytes) -> str:
    lines = data.count(b"\n")
    return f"{path}  {lines} lines  sha256 {hashlib.sha256(data).hexdigest()}"


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description="Generate the synthetic support-triage seeds and evals.")
    ap.add_argument("--out", type=Path, default=here / "data", help="output folder (default: data/ next to this script)")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary folder and exit 1 if the files in --out differ")
    args = ap.parse_args(argv)

    if not args.check:
        for name, data in write(args.out).items():
            print("wrote " + _describe(args.out / name, data))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        fresh = write(Path(tmp))
    ok = True
    for name, data in fresh.items():
        target = args.out / name
        if not target.is_file():
            print(f"missing {target}  (run: python3 {Path(__file__).name})")
            ok = False
        elif target.read_bytes() != data:
            print(f"differs {target}  (run: python3 {Path(__file__).name})")
            ok = False
        else:
            print("ok      " + _describe(target, data))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
