"""Strings of the hosted confirm page, in every locale the built-in templates ship."""

from __future__ import annotations

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Confirm it's you",
        "intro": "{company} asked to confirm that this is you. If you just tried to sign in or create an account, "
        "confirm below.",
        "confirm": "Confirm",
        "deny": "This wasn't me",
        "pick": "Pick the number shown on the screen where you started:",
        "done_title": "You're confirmed",
        "done_body": "You can close this page and go back to {company}.",
        "denied_title": "Thanks for telling us",
        "denied_body": "We stopped this request. No one can use this link now.",
        "neutral_title": "This link can't be used",
        "neutral_body": "It may have expired or already been used. Start again from {company} to get a new one.",
        "wrong_title": "That didn't match",
        "wrong_body": "The number you picked is not the one shown, so we stopped this request and this link can no longer be used. If it was you, start again from {company}.",
        "support": "Need help?",
    },
    "es": {
        "title": "Confirma que eres tú",
        "intro": "{company} quiere confirmar que eres tú. Si acabas de iniciar sesión o crear una cuenta, "
        "confírmalo abajo.",
        "confirm": "Confirmar",
        "deny": "No fui yo",
        "pick": "Elige el número que aparece en la pantalla donde empezaste:",
        "done_title": "Confirmado",
        "done_body": "Puedes cerrar esta página y volver a {company}.",
        "denied_title": "Gracias por avisarnos",
        "denied_body": "Hemos detenido esta solicitud. Nadie puede usar este enlace ahora.",
        "neutral_title": "Este enlace no se puede usar",
        "neutral_body": "Puede que haya caducado o ya se haya usado. Vuelve a {company} para obtener uno nuevo.",
        "wrong_title": "No coincide",
        "wrong_body": "El número elegido no es el que se muestra, así que hemos detenido esta solicitud y este enlace ya no se puede usar. Si eras tú, vuelve a empezar desde {company}.",
        "support": "¿Necesitas ayuda?",
    },
    "fr": {
        "title": "Confirmez que c'est vous",
        "intro": "{company} souhaite confirmer que c'est bien vous. Si vous venez de vous connecter ou de créer "
        "un compte, confirmez ci-dessous.",
        "confirm": "Confirmer",
        "deny": "Ce n'était pas moi",
        "pick": "Choisissez le nombre affiché sur l'écran où vous avez commencé :",
        "done_title": "C'est confirmé",
        "done_body": "Vous pouvez fermer cette page et revenir sur {company}.",
        "denied_title": "Merci de nous avoir prévenus",
        "denied_body": "Nous avons arrêté cette demande. Ce lien ne peut plus être utilisé.",
        "neutral_title": "Ce lien ne peut pas être utilisé",
        "neutral_body": "Il a peut-être expiré ou déjà servi. Recommencez depuis {company} pour en obtenir un nouveau.",
        "wrong_title": "Ça ne correspond pas",
        "wrong_body": "Le nombre choisi n'est pas celui affiché : nous avons donc arrêté cette demande et ce lien ne peut plus être utilisé. Si c'était vous, recommencez depuis {company}.",
        "support": "Besoin d'aide ?",
    },
    "de": {
        "title": "Bestätigen Sie, dass Sie es sind",
        "intro": "{company} möchte bestätigen, dass Sie es sind. Wenn Sie sich gerade anmelden oder ein Konto "
        "eröffnen wollten, bestätigen Sie bitte unten.",
        "confirm": "Bestätigen",
        "deny": "Das war ich nicht",
        "pick": "Wählen Sie die Zahl, die auf dem Bildschirm angezeigt wird, auf dem Sie begonnen haben:",
        "done_title": "Bestätigt",
        "done_body": "Sie können diese Seite schließen und zu {company} zurückkehren.",
        "denied_title": "Danke für Ihren Hinweis",
        "denied_body": "Wir haben diese Anfrage gestoppt. Dieser Link kann nicht mehr verwendet werden.",
        "neutral_title": "Dieser Link kann nicht verwendet werden",
        "neutral_body": "Er ist vielleicht abgelaufen oder wurde schon benutzt. Beginnen Sie erneut bei {company}.",
        "wrong_title": "Das passt nicht",
        "wrong_body": "Die gewählte Zahl ist nicht die angezeigte. Deshalb haben wir diese Anfrage gestoppt, und dieser Link kann nicht mehr verwendet werden. Wenn Sie es waren, beginnen Sie erneut bei {company}.",
        "support": "Hilfe nötig?",
    },
    "ar": {
        "title": "أكّد أنك أنت",
        "intro": "تطلب {company} التأكد من أنك أنت. إذا كنت قد حاولت للتو تسجيل الدخول أو إنشاء حساب، فأكّد أدناه.",
        "confirm": "تأكيد",
        "deny": "لم أكن أنا",
        "pick": "اختر الرقم المعروض على الشاشة التي بدأت منها:",
        "done_title": "تم التأكيد",
        "done_body": "يمكنك إغلاق هذه الصفحة والعودة إلى {company}.",
        "denied_title": "شكرًا لإبلاغنا",
        "denied_body": "أوقفنا هذا الطلب. لا يمكن لأحد استخدام هذا الرابط الآن.",
        "neutral_title": "لا يمكن استخدام هذا الرابط",
        "neutral_body": "ربما انتهت صلاحيته أو استُخدم من قبل. ابدأ من جديد من {company} للحصول على رابط جديد.",
        "wrong_title": "الرقم غير مطابق",
        "wrong_body": "الرقم الذي اخترته ليس الرقم المعروض، لذلك أوقفنا هذا الطلب ولم يعد بالإمكان استخدام هذا الرابط. إذا كنت أنت، فابدأ من جديد من {company}.",
        "support": "هل تحتاج إلى مساعدة؟",
    },
}


def strings(locale: str) -> dict[str, str]:
    return STRINGS.get(locale.split("-")[0].lower(), STRINGS["en"])
