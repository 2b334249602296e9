"""Words for the corpus: names, subjects and sentences of help-desk mail in eight languages."""

# ruff: noqa: RUF001  (look-alike letters and dashes are the point: real mail is written in these scripts)

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Locale:
    code: str
    weight: int
    tz: str
    domains: tuple[str, ...]
    first: tuple[str, ...]
    last: tuple[str, ...]
    subjects: tuple[str, ...]
    sentences: tuple[str, ...]
    replies: tuple[str, ...]
    staff_replies: tuple[str, ...]
    greeting: str
    closing: str
    wrote: str  # attribution line above quoted text: {date} and {name}
    reply_prefixes: tuple[str, ...]
    forward_prefix: str
    ooo: str  # auto-reply subject prefix


LOCALES: tuple[Locale, ...] = (
    Locale(
        "en", 40, "-0500", ("example.net", "example.com", "corp.example.com"),
        ("Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Isla", "Jack", "Olivia", "Liam",
         "Sophie", "Noah", "Chloé", "Zoë", "Renée", "Siobhán"),
        ("Smith", "Johnson", "Brown", "Taylor", "Wilson", "O'Brien", "Clarke", "Walker", "Hughes", "Patel",
         "Nguyen", "Kowalski", "Smith, Jr."),
        ("The printer on floor 3 is jammed", "Cannot log in to the VPN since this morning",
         "Outlook keeps asking for my password", "New laptop for our intern starting Monday",
         "Shared drive S: is not mapped", "Request: access to the finance folder", "Monitor flickering",
         "Password reset for {name}", "Teams calls drop after 5 minutes", "Wi-Fi in meeting room B is very slow",
         "Laptop {asset} won't boot", "Phone extension {ext} forwards to the wrong person",
         "Please install Adobe Reader on {asset}", "Email to the customer bounced", "Keyboard missing keys",
         "Calendar invites arrive twice", "Urgent: payroll export fails with error 0x80070005",
         "Docking station not detecting the second screen", "Badge does not open the garage door"),
        ("Since this morning it stops after the first page and shows a paper jam.",
         "I restarted it twice, but the problem is still there.", "Could you please have a look today?",
         "The error message says: \"Access denied (code {ext})\".", "It worked fine until the update last week.",
         "My colleague {name} has the same problem.", "I am working from home this week.",
         "I attached a screenshot of the error.", "This is blocking the monthly report.",
         "The asset number on the sticker is {asset}.", "I tried another cable, same result.",
         "Please call me on extension {ext} if you need more details.", "It only happens in the afternoon.",
         "We have a customer visit at 2 pm, so this is a bit urgent."),
        ("Thanks, that fixed it!", "Still not working, unfortunately.", "I tried that, same error.",
         "When could someone come by?", "Here is the screenshot you asked for.", "Any update on this?",
         "It works again after the restart, thank you.", "Sorry, I forgot to mention it is the laptop {asset}."),
        ("I have reset your password; please try again.", "Could you send us a screenshot of the error?",
         "We will come by this afternoon to have a look.", "The printer has been fixed, please try again.",
         "Can you tell us the asset number of the device?", "I have added you to the group, log out and in again."),
        "Hello,", "Thanks,", "On {date}, {name} wrote:", ("Re: ", "RE: ", "Re: Re: ", "RE: FW: ", "Re:"), "FW: ",
        "Automatic reply: ",
    ),
    Locale(
        "de", 20, "+0100", ("beispiel.de", "firma.example.de", "example.at"),
        ("Jürgen", "Anna", "Björn", "Jörg", "Käthe", "Lukas", "Müge", "Sören", "Uwe", "Ömer", "Lena", "Günther"),
        ("Müller", "Schäfer", "Groß", "Weiß", "Köhler", "Brandt", "Fuchs", "Hoffmann", "Öztürk", "Schmidt"),
        ("Drucker im 3. OG druckt nicht", "VPN-Verbindung bricht ständig ab", "Zugang für neuen Mitarbeiter",
         "Outlook fragt dauernd nach dem Kennwort", "Bitte Software auf {asset} installieren",
         "Bildschirm flackert – dringend", "Netzlaufwerk nicht erreichbar", "Passwort zurücksetzen für {name}",
         "Telefon {ext} klingelt nicht", "Störung: Anmeldung am Rechner {asset} schlägt fehl",
         "Größere Festplatte für Büro 2.14", "Rechnungsprüfung: Zugriff auf Ordner „Kreditoren“"),
        ("Seit heute früh kommt beim Drucken eine Fehlermeldung.", "Ich habe den Rechner schon neu gestartet.",
         "Könnten Sie sich das bitte heute noch ansehen?", "Die Meldung lautet: „Zugriff verweigert“.",
         "Mein Kollege {name} hat das gleiche Problem.", "Die Inventarnummer ist {asset}.",
         "Es ist ziemlich dringend, weil wir morgen eine Präsentation haben.",
         "Ich bin unter Durchwahl {ext} erreichbar.",
         "Bis letzte Woche hat alles problemlos funktioniert.", "Einen Screenshot habe ich angehängt."),
        ("Danke, jetzt geht es wieder!", "Leider funktioniert es immer noch nicht.", "Gibt es schon etwas Neues?",
         "Anbei der gewünschte Screenshot.", "Wann könnte jemand vorbeikommen?", "Nachtrag: es betrifft auch {asset}."),
        ("Ich habe Ihr Kennwort zurückgesetzt, bitte versuchen Sie es erneut.",
         "Können Sie uns die Inventarnummer nennen?", "Wir kommen heute Nachmittag vorbei.",
         "Der Drucker ist repariert, bitte noch einmal testen."),
        "Hallo,", "Viele Grüße", "Am {date} schrieb {name}:", ("AW: ", "Aw: ", "AW: WG: ", "Antw: ", "RE: AW: "),
        "WG: ", "Abwesenheitsnotiz: ",
    ),
    Locale(
        "fr", 10, "+0100", ("exemple.fr", "societe.example.fr"),
        ("Hélène", "François", "Élodie", "Jérôme", "Benoît", "Céline", "Noël", "Anaïs", "Gaël", "Loïc"),
        ("Lefèvre", "Dubois", "Fontaine", "Bélanger", "Garçon", "Mercier", "Rousseau", "Lemaître"),
        ("Problème d'accès au VPN", "L'imprimante du 2e étage ne répond plus", "Demande de création de compte",
         "Écran noir au démarrage de {asset}", "Mot de passe expiré", "Accès au dossier « Comptabilité »"),
        ("Depuis ce matin, je ne peux plus me connecter.", "J'ai déjà redémarré l'ordinateur.",
         "Pourriez-vous regarder cela aujourd'hui ?", "Le message d'erreur indique « accès refusé ».",
         "Mon numéro de poste est le {ext}.", "C'est assez urgent, merci d'avance."),
        ("Merci, cela fonctionne à nouveau !", "Toujours le même problème, malheureusement.",
         "Voici la capture d'écran demandée.", "Avez-vous du nouveau ?"),
        ("J'ai réinitialisé votre mot de passe.", "Pouvez-vous nous envoyer une capture d'écran ?"),
        "Bonjour,", "Cordialement,", "Le {date}, {name} a écrit :", ("RE: ", "Re: ", "TR: RE: "), "TR: ",
        "Réponse automatique : ",
    ),
    Locale(
        "es", 8, "+0100", ("ejemplo.es", "empresa.example.es"),
        ("José", "María", "Iñaki", "Begoña", "Ramón", "Lucía", "Andrés", "Nuria"),
        ("García", "Muñoz", "Peña", "Ibáñez", "Núñez", "Martín", "Cañas"),
        ("No puedo acceder al correo", "La impresora de la 3ª planta no funciona", "Solicitud de portátil nuevo",
         "Error al iniciar sesión en {asset}", "Contraseña caducada"),
        ("Desde esta mañana no puedo entrar.", "Ya he reiniciado el ordenador dos veces.",
         "¿Podrían revisarlo hoy, por favor?", "Mi extensión es la {ext}.", "Es bastante urgente."),
        ("¡Gracias, ya funciona!", "Sigue sin funcionar.", "¿Hay alguna novedad?"),
        ("He restablecido su contraseña.", "¿Puede enviarnos una captura de pantalla?"),
        "Hola:", "Saludos,", "El {date}, {name} escribió:", ("RE: ", "Re: ", "RV: RE: "), "RV: ",
        "Respuesta automática: ",
    ),
    Locale(
        "sv", 5, "+0100", ("exempel.se",),
        ("Åsa", "Björn", "Märta", "Sören", "Ingrid", "Örjan"),
        ("Ångström", "Lindqvist", "Ekström", "Öberg", "Nilsson"),
        ("Skrivaren på plan 4 fungerar inte", "Kan inte logga in på VPN", "Ny dator till praktikanten"),
        ("Sedan i morse går det inte att skriva ut.", "Jag har startat om datorn.", "Kan ni titta på det idag?"),
        ("Tack, nu fungerar det!", "Det fungerar fortfarande inte."),
        ("Jag har återställt ditt lösenord.",),
        "Hej,", "Med vänliga hälsningar", "Den {date} skrev {name}:", ("SV: ", "Sv: "), "VB: ", "Autosvar: ",
    ),
    Locale(
        "pl", 5, "+0100", ("przyklad.pl",),
        ("Łukasz", "Małgorzata", "Paweł", "Agnieszka", "Żaneta", "Michał"),
        ("Żółć", "Wiśniewski", "Kowalczyk", "Dąbrowska", "Szczęsny"),
        ("Nie mogę się zalogować do poczty", "Drukarka na 2. piętrze nie działa", "Prośba o dostęp do folderu"),
        ("Od rana nie mogę się zalogować.", "Zrestartowałem komputer, bez zmian.", "Proszę o pilną pomoc."),
        ("Dziękuję, już działa!", "Nadal nie działa."),
        ("Zresetowałem hasło, proszę spróbować ponownie.",),
        "Dzień dobry,", "Pozdrawiam", "W dniu {date} {name} napisał:", ("Odp: ", "RE: ", "Re: "), "PD: ",
        "Odpowiedź automatyczna: ",
    ),
    Locale(
        "ru", 4, "+0300", ("primer.example.ru",),
        ("Анна", "Дмитрий", "Ольга", "Сергей", "Наталья"),
        ("Иванова", "Петров", "Смирнова", "Кузнецов"),
        ("Не работает почта", "Принтер на 3 этаже не печатает", "Нужен доступ к общей папке"),
        ("С утра не могу войти в систему.", "Перезагрузка не помогла.", "Посмотрите, пожалуйста, сегодня."),
        ("Спасибо, всё работает!", "Всё ещё не работает."),
        ("Мы сбросили ваш пароль.",),
        "Здравствуйте,", "С уважением,", "{date}, {name} написал(а):", ("RE: ", "Re: ", "Ответ: "), "Fwd: ",
        "Автоответ: ",
    ),
    Locale(
        "ja", 3, "+0900", ("rei.example.jp",),
        ("太郎", "花子", "健", "美咲"),
        ("田中", "佐藤", "鈴木", "高橋"),
        ("プリンターが動きません", "VPNに接続できません", "パスワードの再設定をお願いします"),
        ("今朝から印刷できません。", "再起動しましたが直りません。", "本日中に確認していただけますか。"),
        ("ありがとうございます。直りました。", "まだ直っていません。"),
        ("パスワードを再設定しました。",),
        "お疲れ様です。", "よろしくお願いします。", "{date} {name} のメッセージ:", ("RE: ", "Re: "), "FW: ",
        "自動応答: ",
    ),
)  # fmt: skip

STAFF: tuple[tuple[str, str], ...] = (
    ("Sam Support", "sam@it.example.org"),
    ("Priya Raman", "priya.raman@it.example.org"),
    ("Jörn Weißmann", "joern.weissmann@it.example.org"),
    ("Marta Núñez", "marta.nunez@it.example.org"),
    ("Ken O'Connor", "ken.oconnor@it.example.org"),
)

SIGNATURES: tuple[str, ...] = (
    "",
    "\n-- \n{name}\n{company}\nPhone +1 555 0100 ext. {ext}\n",
    "\n--\n{name} | {company}\nThis e-mail may contain confidential information. If you are not the intended "
    "recipient, please notify the sender and delete it.\n",
    "\nSent from my iPhone\n",
)

COMPANIES: tuple[str, ...] = ("Example Corp", "Beispiel GmbH", "Exemple SARL", "Ejemplo S.L.", "Example Ltd")

NOTIFICATIONS: tuple[tuple[str, str, str], ...] = (
    ("Monitoring", "nagios@monitoring.example.com", "PROBLEM: disk /var on fileserver-02 is WARNING"),
    ("Backup Report", "noreply@backup.example.com", "Backup job 'nightly-full' completed with warnings"),
    ("Vendor News", "newsletter@vendor.example.com", "Your monthly product update – März edition"),
    ("Ticket System", "notifications@saas.example.com", "Your subscription renews in 14 days"),
)
