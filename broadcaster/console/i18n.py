"""Every string the console shows, in German (first) and English, in one dictionary.

Each entry is a (German, English) pair, so no string can exist in one language only.
Placeholders use ``str.format`` names. Template texts, variable labels and problem
messages from the Composer are content and are shown as they are.
"""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("de", "en")
DEFAULT_LANGUAGE = "de"

TEXTS: dict[str, tuple[str, str]] = {
    # frame
    "app.name": ("Warnsystem", "Alert system"),
    "nav.dashboard": ("Übersicht", "Overview"),
    "nav.alerts": ("Alle Meldungen", "All alerts"),
    "nav.logout": ("Abmelden", "Log out"),
    "nav.main": ("Hauptnavigation", "Main navigation"),
    "nav.language": ("Sprache", "Language"),
    "nav.signed_in": ("Angemeldet als {name} ({role})", "Signed in as {name} ({role})"),
    "role.viewer": ("Lesezugriff", "viewer"),
    "role.officer": ("Einsatzkraft", "officer"),
    "role.admin": ("Administration", "admin"),
    "mode.live": ("ECHTALARM", "LIVE ALERT"),
    "mode.exercise": ("ÜBUNG", "EXERCISE"),
    "banner.live": ("ECHTALARM – geht an die Öffentlichkeit",
                    "LIVE ALERT – reaches the public"),
    "banner.exercise": ("ÜBUNG – keine echte Warnung – nur Übungskanäle",
                        "EXERCISE – not a real alert – exercise channels only"),
    "skip": ("Zum Inhalt springen", "Skip to content"),
    # login
    "login.title": ("Anmelden", "Sign in"),
    "login.username": ("Benutzername", "User name"),
    "login.secret": ("Passwort oder API-Token", "Password or API token"),
    "login.secret_help": ("Ein API-Token (bc_…) meldet auch ohne Benutzernamen an.",
                          "An API token (bc_…) signs you in without a user name."),
    "login.submit": ("Anmelden", "Sign in"),
    "login.failed": ("Benutzername oder Passwort falsch.", "Wrong user name or password."),
    "login.locked": (
        "Zu viele fehlgeschlagene Anmeldungen. Die Anmeldung ist für {minutes} Minuten "
        "gesperrt (bis {until} Uhr). Das richtige Passwort hilft erst danach wieder; "
        "mit dem API-Token geht es sofort, falls nur Ihr Konto gesperrt ist.",
        "Too many failed sign-ins. Signing in is locked for {minutes} minutes "
        "(until {until}). The right password works again only after that; your API token "
        "works at once if only your account is locked."),
    "login.expired": ("Bitte melden Sie sich an.", "Please sign in."),
    "login.logged_out": ("Sie sind abgemeldet.", "You are signed out."),
    "login.cookies": ("Das Formular ist abgelaufen oder Cookies sind gesperrt. Bitte die "
                      "Seite neu laden und erneut versuchen.",
                      "The form has expired or cookies are blocked. Please reload the page "
                      "and try again."),
    # dashboard
    "dash.title": ("Übersicht", "Overview"),
    "dash.new": ("Neue Meldung", "New alert"),
    "dash.in_progress": ("In Zustellung", "Being delivered"),
    "dash.awaiting": ("Wartet auf Bestätigung", "Awaiting confirmation"),
    "dash.recent": ("Letzte Meldungen", "Recent alerts"),
    "dash.scheduled": ("Geplant", "Scheduled"),
    "dash.expired": ("Abgelaufen ohne Entwarnung", "Expired without an all-clear"),
    "dash.expired_help": ("Die Meldung hat ihre Gültigkeit überschritten, aber es gab keine "
                          "Entwarnung. Bitte eine Entwarnung oder ein Update senden.",
                          "The alert is past its validity but no all-clear was sent. Please "
                          "send an all-clear or an update."),
    "board.expired": ("Abgelaufen seit {at} – keine Entwarnung gesendet.",
                      "Expired since {at} – no all-clear sent."),
    "board.scheduled": ("Geplant für {at}. Bis dahin kann die Meldung zurückgezogen werden.",
                        "Scheduled for {at}. Until then it can be withdrawn."),
    "board.late": ("Mit {seconds} s Verspätung gesendet (der Dienst lief zur geplanten Zeit "
                   "nicht).", "Sent {seconds} s late (the service was not running at the "
                   "scheduled time)."),
    "dash.none": ("Keine.", "None."),
    "dash.channels": ("Kanäle", "Channels"),
    "dash.nodes": ("Knoten des Warnsystems", "Nodes of the alert system"),
    "node.this": ("dieser", "this one"),
    "node.running": ("läuft", "running"),
    "node.stopped": ("beendet", "stopped"),
    "node.lost": ("AUSGEFALLEN – seine Arbeit übernehmen die anderen",
                  "LOST – the others take over its work"),
    "node.detail": ("zuletzt gemeldet {seen} · {work} Zustellung(en) in Arbeit · Version "
                    "{version}", "last seen {seen} · {work} delivery(ies) under way · version "
                    "{version}"),
    "dash.read_only": ("Sie haben Lesezugriff: Meldungen senden können nur Einsatzkräfte.",
                       "You have read access: only officers can send alerts."),
    "channel.up": ("bereit", "up"),
    "channel.down": ("GESTÖRT", "DOWN"),
    "channel.exercise": ("Übungskanal", "exercise channel"),
    "channel.live": ("Echtkanal", "live channel"),
    "channel.disabled": ("abgeschaltet", "disabled"),
    # alert list and details
    "list.title": ("Alle Meldungen", "All alerts"),
    "list.older": ("Ältere Meldungen", "Older alerts"),
    "list.newest": ("Zu den neuesten", "Back to the newest"),
    "alert.by": ("von {name}", "by {name}"),
    "alert.follows": ("Folgemeldung zu", "Follows up"),
    "alert.id": ("Kennung", "Id"),
    "alert.texts": ("Versendete Texte", "Texts sent"),
    "alert.attempts_link": ("Alle Zustellversuche", "Every delivery attempt"),
    "alert.board_link": ("Zur Statusanzeige", "To the status board"),
    "kind.alert": ("Warnung", "Alert"),
    "kind.update": ("Update", "Update"),
    "kind.allclear": ("Entwarnung", "All clear"),
    "kind.correction": ("Korrektur", "Correction"),
    "state.scheduled": ("geplant", "scheduled"),
    "state.awaiting_approval": ("wartet auf Bestätigung", "awaiting confirmation"),
    "state.delivering": ("wird zugestellt", "delivering"),
    "state.delivered": ("zugestellt", "delivered"),
    "state.partial": ("teilweise zugestellt", "partly delivered"),
    "state.failed": ("fehlgeschlagen", "failed"),
    "state.cancelled": ("abgebrochen", "cancelled"),
    "state.queued": ("wartet", "queued"),
    "state.sending": ("wird gesendet", "sending"),
    "state.unknown": ("unklar – bitte prüfen", "unknown – please check"),
    "severity.extreme": ("extrem", "extreme"),
    "severity.severe": ("schwer", "severe"),
    "severity.moderate": ("mittel", "moderate"),
    "severity.minor": ("gering", "minor"),
    # status board
    "board.channels": ("Zustellung je Kanal", "Delivery per channel"),
    "board.attempts": ("Versuche: {count}", "Attempts: {count}"),
    "board.open": ("Beitrag öffnen", "Open the post"),
    "board.retry": ("Erneut senden", "Send again"),
    "board.followups": ("Folgemeldung", "Follow-up"),
    "board.update": ("Update", "Update"),
    "board.allclear": ("Entwarnung", "All clear"),
    "board.correction": ("Korrektur", "Correction"),
    "board.confirm": ("Bestätigen und senden", "Confirm and send"),
    "board.withdraw": ("Zurückziehen", "Withdraw"),
    "board.waiting_second": ("Wartet auf eine zweite Person: eine andere Einsatzkraft muss "
                             "diese Meldung bestätigen.",
                             "Waiting for a second person: a different officer must confirm "
                             "this alert."),
    "board.confirm_intro": ("{name} hat diese Meldung erstellt. Prüfen Sie die Texte unten, "
                            "bevor Sie bestätigen.",
                            "{name} created this alert. Check the texts below before you "
                            "confirm."),
    "board.offline": ("Keine Verbindung zum Server – die Anzeige wird nicht aktualisiert.",
                      "No connection to the server – the board is not updating."),
    "board.live_updates": ("Die Anzeige aktualisiert sich selbst.",
                           "This board updates itself."),
    "board.session_ended": ("Ihre Sitzung ist beendet. Bitte neu anmelden.",
                            "Your session has ended. Please sign in again."),
    "attempts.title": ("Zustellversuche", "Delivery attempts"),
    "attempts.none": ("Noch kein Versuch.", "No attempt yet."),
    "attempts.number": ("Versuch", "Attempt"),
    "attempts.started": ("Beginn", "Started"),
    "attempts.duration": ("Dauer", "Duration"),
    "attempts.result": ("Ergebnis", "Result"),
    "attempts.message": ("Meldung", "Message"),
    # send flow
    "send.title": ("Neue Meldung", "New alert"),
    "send.step_mode": ("Schritt 1 von 4: Übung oder Echtalarm?",
                       "Step 1 of 4: exercise or live?"),
    "send.step_template": ("Schritt 2 von 4: Vorlage wählen", "Step 2 of 4: choose a template"),
    "send.step_form": ("Schritt 3 von 4: Angaben eintragen", "Step 3 of 4: fill in the details"),
    "send.step_preview": ("Schritt 4 von 4: Prüfen und senden", "Step 4 of 4: check and send"),
    "send.exercise": ("Übung", "Exercise"),
    "send.exercise_help": ("Nur an Übungskanäle, jeder Text trägt den Übungshinweis. "
                           "Auch Entwürfe von Vorlagen sind erlaubt.",
                           "Only to exercise channels; every text carries the exercise notice. "
                           "Draft templates are allowed."),
    "send.live": ("Echtalarm", "Live alert"),
    "send.live_help": ("Geht sofort an die Öffentlichkeit. Nur freigegebene Vorlagen.",
                       "Goes to the public at once. Approved templates only."),
    "send.not_approved": ("nicht freigegeben", "not approved"),
    "send.approved": ("freigegeben", "approved"),
    "send.changed": ("geändert, nicht freigegeben", "changed, not approved"),
    "send.no_templates": ("Keine Vorlage dieser Art vorhanden.",
                          "There is no template of this kind."),
    "send.live_only_approved": (
        "Für Echtalarme sind nur freigegebene Vorlagen wählbar; die Pressestelle gibt "
        "Vorlagen frei.",
        "Live alerts use approved templates only; the press office approves templates."),
    "send.followup_title": ("{kind} zu: {title}", "{kind} for: {title}"),
    "send.channels": ("Kanäle", "Channels"),
    "send.channels_none": ("Wählen Sie mindestens einen Kanal.", "Choose at least one channel."),
    "send.no_channels": ("Für diese Art sind keine Kanäle eingerichtet.",
                         "No channels are configured for this mode."),
    "send.preview": ("Vorschau", "Preview"),
    "send.back": ("Zurück", "Back"),
    "send.edit": ("Angaben ändern", "Change the details"),
    "send.choose": ("– bitte wählen –", "– please choose –"),
    "send.counter": ("{count} von {limit} Zeichen", "{count} of {limit} characters"),
    "send.range": ("von {min} bis {max}", "from {min} to {max}"),
    "send.min": ("mindestens {min}", "at least {min}"),
    "send.max": ("höchstens {max}", "at most {max}"),
    "send.decimals": ("{count} Nachkommastellen", "{count} decimal places"),
    "send.whole": ("ganze Zahl", "whole number"),
    "send.time": ("Uhrzeit, z. B. 14:30", "time, e.g. 14:30"),
    "send.date": ("Datum, z. B. 24.11.2026", "date, e.g. 2026-11-24"),
    "send.url": ("Webadresse mit https://", "web address with https://"),
    "send.errors": ("Bitte korrigieren Sie die markierten Angaben.",
                    "Please correct the marked fields."),
    "send.problems": ("Probleme – so kann die Meldung nicht gesendet werden:",
                      "Problems – the alert cannot be sent like this:"),
    "send.length": ("{length} von {limit} Zeichen", "{length} of {limit} characters"),
    "send.length_nolimit": ("{length} Zeichen", "{length} characters"),
    "send.as_posted": ("So wird es veröffentlicht:", "This is what will be posted:"),
    "send.second_officer": (
        "Nach dem Absenden wartet diese Meldung auf die Bestätigung durch eine zweite "
        "Einsatzkraft.",
        "After sending, this alert waits for a second officer to confirm it."),
    "send.confirm_word": ("SENDEN", "SEND"),
    "send.type_word": ("Tippen Sie zur Bestätigung {word} in das Feld:",
                       "To confirm, type {word} into the field:"),
    "send.word_wrong": ("Zum Senden eines Echtalarms {word} eintippen.",
                        "Type {word} to send a live alert."),
    "send.send_live": ("ECHTALARM SENDEN", "SEND LIVE ALERT"),
    "send.send_exercise": ("Übung senden", "Send exercise"),
    # errors
    "error.title": ("Fehler", "Error"),
    "error.ledger": ("Die Datenbank des Warnsystems antwortet gerade nicht. Es werden keine "
                     "Meldungen angenommen; bereits laufende Zustellungen gehen weiter. Die "
                     "Seite in einigen Sekunden neu laden; hält es an, die IT-Bereitschaft "
                     "anrufen.",
                     "The alert system's database is not answering. No alerts are accepted "
                     "now; deliveries already under way go on. Reload in a few seconds; if it "
                     "persists, call the IT on duty."),
    "error.csrf": ("Das Formular ist ungültig oder abgelaufen (Schutz vor gefälschten "
                   "Anfragen). Bitte die Seite neu laden.",
                   "The form is invalid or has expired (protection against forged requests). "
                   "Please reload the page."),
    "error.form": ("Das Formular ist unvollständig. Bitte die Vorschau neu laden.",
                   "The form is incomplete. Please reload the preview."),
    "error.role": ("Dafür ist die Rolle „{needed}“ nötig; Sie haben „{role}“.",
                   "This needs the role “{needed}”; you have “{role}”."),
    "error.404": ("Nicht gefunden.", "Not found."),
    "error.back": ("Zur Übersicht", "To the overview"),
}


def translator(language: str) -> Callable[..., str]:
    """``t(key, **values)`` for one language; an unknown key is a KeyError (a bug)."""
    index = LANGUAGES.index(language) if language in LANGUAGES else 0

    def t(key: str, **values: object) -> str:
        text = TEXTS[key][index]
        return text.format(**values) if values else text

    return t
