"""French and English labels for the codes the console shows (pure data, no I/O).

Sources: flow states are ours (architecture.md "The flow and its states"); Chorus Pro flow statuses
chorus-reference.md §2.1; acknowledgement status and reason codes domain.md §3 and chorus-reference.md
§3.3; invoice lifecycle codes and the 213 reasons chorus-reference.md §3.2 (CL-09 titles win over the
BR-FR-CDV-15 message text).
"""

from __future__ import annotations

from collections.abc import Mapping

LANGUAGES = ("en", "fr")

# kind -> code -> (English, French)
LABELS: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "state": {
        "RECEIVED": ("Received", "Reçu"),
        "IDENTIFIED": ("Identified", "Identifié"),
        "TRANSFORMED": ("Transformed", "Transformé"),
        "VALIDATED": ("Validated", "Validé"),
        "ROUTED": ("Routed", "Routé"),
        "DELIVERED": ("Delivered", "Distribué"),
        "UNDELIVERED": ("Not delivered, waits for an operator", "Non distribué, attend un opérateur"),
        "ACKNOWLEDGED": ("Acknowledged", "Acquitté"),
        "REJECTED": ("Rejected", "Rejeté"),
        "FAILED": ("Failed, retrying", "En échec, reprise"),
        "QUARANTINED": ("Quarantined", "En quarantaine"),
    },
    "chorus": {  # chorus-reference.md §2.1
        "IN_RECU": ("Received", "Reçu"),
        "IN_INTEGRE": ("Integrated", "Intégré"),
        "IN_INTEGRE_PARTIEL": ("Partly integrated", "Intégré partiellement"),
        "IN_REJETE": ("Rejected", "Rejeté"),
        "IN_INCIDENTE": ("Incident, resend the whole flow", "Incidenté, reprendre le flux intégralement"),
    },
    "ack": {  # domain.md §3
        "Pending": ("Pending", "En attente"),
        "Ok": ("Accepted", "Accepté"),
        "Error": ("Refused", "Refusé"),
    },
    "reason": {  # domain.md §3 (flow level) and §4 / chorus-reference.md §3.2 (213 and 501 reasons)
        "IRR_VID_F": ("Empty flow", "Flux vide"),
        "IRR_SYNTAX": ("Unreadable or unknown syntax", "Syntaxe illisible ou inconnue"),
        "IRR_TAILLE_F": ("File too large", "Fichier trop volumineux"),
        "AlreadyExistingFlow": ("Flow already received", "Flux déjà reçu"),
        "ChecksumMismatch": ("Checksum mismatch", "Empreinte incorrecte"),
        "VirusFound": ("Virus found", "Virus détecté"),
        "REJ_SEMAN": ("Semantic rules broken", "Règles sémantiques non respectées"),
        "REJ_UNI": ("Not unique", "Unicité non respectée"),
        "REJ_COH": ("Incoherent", "Incohérence"),
        "REJ_ADR": ("Addressing error", "Erreur d'adressage"),
        "DOUBLON": ("Duplicate invoice", "Facture en doublon"),
        "DEST_INC": ("Unknown recipient", "Destinataire inconnu"),
        "CALCUL_ERR": ("Calculation error", "Erreur de calcul"),
        "MONTANTTOTAL_ERR": ("Wrong total amount", "Montant total erroné"),
        "ADR_ERR": ("Address error", "Erreur d'adresse"),
        "ROUTAGE_ERR": ("Routing error", "Erreur de routage"),
        "REJ_CONT_B2G": ("B2G content rules broken", "Contrôles B2G non respectés"),
        "REJ_REF_PJ": ("Attachment reference error", "Référence de pièce jointe erronée"),
        "REJ_ASS_PJ": ("Attachment link error", "Association de pièce jointe erronée"),
        "IRR_VID_PJ": ("Empty attachment", "Pièce jointe vide"),
        "IRR_NOM_PJ": ("Attachment name refused", "Nom de pièce jointe refusé"),
        "IRR_TAILLE_PJ": ("Attachment too large", "Pièce jointe trop volumineuse"),
        "IRR_EXT_DOC": ("Attachment type refused", "Type de pièce jointe refusé"),
        "ERR_INTERNE": ("Gateway could not process it", "Erreur interne de la passerelle"),
    },
    "invoice": {
        "accepted": ("Accepted", "Acceptée"),
        "rejected": ("Rejected", "Rejetée"),
        "not_validated": ("Not validated", "Non validée"),
    },
    "lifecycle": {  # chorus-reference.md §3.2
        "200": ("Deposited", "Déposée"),
        "201": ("Issued by the platform", "Émise par la plateforme"),
        "202": ("Received by the platform", "Reçue par la plateforme"),
        "203": ("Made available", "Mise à disposition"),
        "204": ("Taken over", "Prise en charge"),
        "205": ("Approved", "Approuvée"),
        "206": ("Partly approved", "Approuvée partiellement"),
        "207": ("Disputed", "En litige"),
        "208": ("Suspended", "Suspendue"),
        "209": ("Completed", "Complétée"),
        "210": ("Refused", "Refusée"),
        "211": ("Payment sent", "Paiement transmis"),
        "212": ("Cashed", "Encaissée"),
        "213": ("Rejected", "Rejetée"),
        "220": ("Cancelled", "Annulée"),
        "221": ("Routing error", "Erreur de routage"),
        "501": ("Inadmissible", "Irrecevable"),
    },
    "outbox": {
        "pending": ("Pending", "En attente"),
        "sent": ("Sent", "Envoyé"),
        "dead": ("Gave up", "Abandonné"),
    },
}


def label(kind: str, code: object, lang: str = "en") -> str:
    """The label of `code` in `lang`; the code itself when it has none."""
    if code is None or code == "":
        return ""
    pair = LABELS.get(kind, {}).get(str(code))
    if pair is None:
        return str(code)
    return pair[1] if lang == "fr" else pair[0]


def pick_language(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """`?lang=` first, then the remembered choice, then the browser's first language we speak."""
    for choice in (query, cookie):
        if choice in LANGUAGES:
            return str(choice)
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return "en"


# The console's own words (headings, buttons) in both languages.
WORDS: Mapping[str, tuple[str, str]] = {
    "flows": ("Flows", "Flux"),
    "invoices": ("Invoices", "Factures"),
    "invoice": ("Invoice", "Facture"),
    "rejections": ("Rejections", "Rejets"),
    "partners": ("Partners", "Partenaires"),
    "rules": ("Rule packs", "Jeux de règles"),
    "audit": ("Audit", "Journal d'audit"),
    "sign_in": ("Sign in", "Se connecter"),
    "sign_out": ("Sign out", "Se déconnecter"),
    "backlog": ("to process", "à traiter"),
    "quarantined": ("quarantined", "en quarantaine"),
    "filter": ("Filter", "Filtrer"),
    "partner": ("Partner", "Partenaire"),
    "state": ("State", "État"),
    "reason": ("Reason", "Motif"),
    "from": ("From", "Du"),
    "to": ("To", "Au"),
    "received": ("Received", "Reçu le"),
    "file": ("File", "Fichier"),
    "status": ("Status", "Statut"),
    "number": ("Number", "Numéro"),
    "recipient": ("Recipient (SIRET)", "Destinataire (SIRET)"),
    "replay": ("Replay", "Rejouer"),
    "resend": ("Resend", "Renvoyer"),
    "download": ("Download", "Télécharger"),
    "original": ("Original file", "Fichier d'origine"),
    "acknowledgement": ("Acknowledgement", "Accusé de réception"),
    "timeline": ("Timeline", "Historique"),
    "findings": ("Validation findings", "Anomalies de validation"),
    "lifecycle": ("Lifecycle", "Cycle de vie"),
    "deliveries": ("Deliveries", "Distributions"),
    "summary": ("Summary", "Résumé"),
    "any": ("any", "tous"),
    "period": ("Period", "Période"),
    "directory": ("Directory", "Annuaire"),
    "rule": ("Rule", "Règle"),
    "message": ("Message", "Message"),
    "location": ("Location (XPath)", "Emplacement (XPath)"),
    "count": ("Count", "Nombre"),
    "password": ("Password", "Mot de passe"),
    "name": ("Name", "Nom"),
}


def word(key: str, lang: str = "en") -> str:
    pair = WORDS.get(key)
    if pair is None:
        return key
    return pair[1] if lang == "fr" else pair[0]
