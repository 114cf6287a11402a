"""A small multilingual virtual-assistant corpus that atm generates itself.

Templated utterances (written for atm, not taken from any data set) in English,
German, French and Spanish, in written form (`config.data.spoken_share` turns a
share into ATM's spoken form). Deterministic for a given seed, so the demo, the
notebook and the tests need no downloaded data.
"""
from __future__ import annotations

import random
import re

_SLOTS = {
    "en": {
        "time": ["7 am", "half past six", "noon", "9:30 pm", "tomorrow morning", "in ten minutes", "at midnight"],
        "place": ["London", "Berlin", "Paris", "Madrid", "the office", "home", "the airport", "Seattle"],
        "song": ["some jazz", "my workout playlist", "the latest album by Adele", "relaxing piano music",
                 "the radio", "classic rock"],
        "item": ["milk", "eggs", "bread", "coffee beans", "batteries", "tomatoes", "dog food"],
        "person": ["mom", "Alex", "my boss", "the dentist", "Sarah", "grandpa"],
        "device": ["the lights", "the heating", "the fan", "the kitchen lamp", "the tv", "the vacuum"],
        "day": ["today", "tomorrow", "on Friday", "this weekend", "next Monday"],
    },
    "de": {
        "time": ["7 Uhr", "halb sieben", "Mittag", "21:30 Uhr", "morgen früh", "in zehn Minuten", "Mitternacht"],
        "place": ["London", "Berlin", "Paris", "Madrid", "das Büro", "zu Hause", "den Flughafen", "Hamburg"],
        "song": ["etwas Jazz", "meine Sport-Playlist", "das neue Album von Adele", "ruhige Klaviermusik",
                 "das Radio", "klassischen Rock"],
        "item": ["Milch", "Eier", "Brot", "Kaffeebohnen", "Batterien", "Tomaten", "Hundefutter"],
        "person": ["Mama", "Alex", "meinen Chef", "den Zahnarzt", "Sarah", "Opa"],
        "device": ["das Licht", "die Heizung", "den Ventilator", "die Küchenlampe", "den Fernseher"],
        "day": ["heute", "morgen", "am Freitag", "am Wochenende", "nächsten Montag"],
    },
    "fr": {
        "time": ["7 heures", "six heures et demie", "midi", "21h30", "demain matin", "dans dix minutes", "minuit"],
        "place": ["Londres", "Berlin", "Paris", "Madrid", "le bureau", "la maison", "l'aéroport", "Lyon"],
        "song": ["du jazz", "ma playlist de sport", "le dernier album d'Adele", "du piano relaxant",
                 "la radio", "du rock classique"],
        "item": ["du lait", "des œufs", "du pain", "du café", "des piles", "des tomates", "des croquettes"],
        "person": ["maman", "Alex", "mon patron", "le dentiste", "Sarah", "papi"],
        "device": ["la lumière", "le chauffage", "le ventilateur", "la lampe de la cuisine", "la télé"],
        "day": ["aujourd'hui", "demain", "vendredi", "ce week-end", "lundi prochain"],
    },
    "es": {
        "time": ["las 7", "las seis y media", "mediodía", "las 21:30", "mañana por la mañana",
                 "en diez minutos", "medianoche"],
        "place": ["Londres", "Berlín", "París", "Madrid", "la oficina", "casa", "el aeropuerto", "Sevilla"],
        "song": ["algo de jazz", "mi lista de ejercicio", "el último disco de Adele", "piano relajante",
                 "la radio", "rock clásico"],
        "item": ["leche", "huevos", "pan", "café en grano", "pilas", "tomates", "comida para perros"],
        "person": ["mamá", "Alex", "mi jefe", "el dentista", "Sara", "el abuelo"],
        "device": ["las luces", "la calefacción", "el ventilador", "la lámpara de la cocina", "la tele"],
        "day": ["hoy", "mañana", "el viernes", "este fin de semana", "el próximo lunes"],
    },
}

_TEMPLATES = {
    "en": {
        "alarm_set": ["Wake me up at {time}.", "Set an alarm for {time} {day}.", "Please set an alarm at {time}."],
        "weather_query": ["What's the weather like in {place} {day}?", "Will it rain in {place} {day}?",
                          "Do I need an umbrella {day}?"],
        "play_music": ["Play {song}.", "Can you play {song} in the kitchen?", "Put on {song} please."],
        "lists_add": ["Add {item} to my shopping list.", "Put {item} on the list.", "Don't let me forget {item}."],
        "call": ["Call {person}.", "Phone {person} {day}.", "Send a message to {person} saying I'm late."],
        "iot": ["Turn off {device}.", "Switch on {device} at {time}.", "Dim {device} a little."],
        "transport": ["How long does it take to get to {place}?", "Book a taxi to {place} at {time}."],
    },
    "de": {
        "alarm_set": ["Weck mich um {time}.", "Stell einen Wecker für {time} {day}.", "Bitte Wecker um {time}."],
        "weather_query": ["Wie ist das Wetter in {place} {day}?", "Regnet es {day} in {place}?",
                          "Brauche ich {day} einen Regenschirm?"],
        "play_music": ["Spiel {song}.", "Kannst du {song} in der Küche spielen?", "Mach bitte {song} an."],
        "lists_add": ["Setz {item} auf meine Einkaufsliste.", "Schreib {item} auf die Liste."],
        "call": ["Ruf {person} an.", "Ruf {day} {person} an.", "Schick {person} eine Nachricht, dass ich später komme."],
        "iot": ["Schalte {device} aus.", "Mach {device} um {time} an.", "Dimm {device} ein bisschen."],
        "transport": ["Wie lange brauche ich nach {place}?", "Bestell ein Taxi nach {place} um {time}."],
    },
    "fr": {
        "alarm_set": ["Réveille-moi à {time}.", "Mets une alarme à {time} {day}.", "Programme un réveil à {time}."],
        "weather_query": ["Quel temps fait-il à {place} {day} ?", "Est-ce qu'il va pleuvoir à {place} {day} ?"],
        "play_music": ["Joue {song}.", "Tu peux mettre {song} dans la cuisine ?", "Mets {song} s'il te plaît."],
        "lists_add": ["Ajoute {item} à ma liste de courses.", "Mets {item} sur la liste."],
        "call": ["Appelle {person}.", "Appelle {person} {day}.", "Envoie un message à {person} pour dire que je suis en retard."],
        "iot": ["Éteins {device}.", "Allume {device} à {time}.", "Baisse un peu {device}."],
        "transport": ["Combien de temps pour aller à {place} ?", "Réserve un taxi pour {place} à {time}."],
    },
    "es": {
        "alarm_set": ["Despiértame a {time}.", "Pon una alarma a {time} {day}.", "Programa una alarma para {time}."],
        "weather_query": ["¿Qué tiempo hace en {place} {day}?", "¿Va a llover en {place} {day}?"],
        "play_music": ["Pon {song}.", "¿Puedes poner {song} en la cocina?", "Reproduce {song}, por favor."],
        "lists_add": ["Añade {item} a la lista de la compra.", "Apunta {item} en la lista."],
        "call": ["Llama a {person}.", "Llama a {person} {day}.", "Manda un mensaje a {person} diciendo que llego tarde."],
        "iot": ["Apaga {device}.", "Enciende {device} a {time}.", "Baja un poco {device}."],
        "transport": ["¿Cuánto se tarda en llegar a {place}?", "Pide un taxi a {place} a {time}."],
    },
}

LANGUAGES = tuple(_TEMPLATES)


def _draws(n: int, seed: int, languages: tuple[str, ...], what: str):
    """`n` (intent, template, slot fills) draws, languages round-robin; `what` names the languages' source."""
    unknown = sorted(set(languages) - set(LANGUAGES))
    if unknown:
        raise ValueError(f"{what} {unknown}: the synthetic corpus has {list(LANGUAGES)}")
    rng = random.Random(seed)
    for i in range(n):
        lang = languages[i % len(languages)]
        intent = rng.choice(sorted(_TEMPLATES[lang]))
        template = rng.choice(_TEMPLATES[lang][intent])
        yield intent, template, {k: rng.choice(v) for k, v in _SLOTS[lang].items()}


def utterances(n: int, seed: int = 0, languages: tuple[str, ...] = LANGUAGES) -> list[str]:
    """`n` written-form utterances, languages round-robin."""
    return [template.format(**fills) for _, template, fills in _draws(n, seed, languages, "config.data.languages has")]


def labelled_utterances(n: int, seed: int = 0, languages: tuple[str, ...] = LANGUAGES):
    """`n` (words, BIO tags, intent) triples from the same templates: the slots are the template's fields,
    punctuation is dropped and words are lower case (as a speech recogniser writes them)."""
    out = []
    for intent, template, fills in _draws(n, seed, languages, "languages"):
        words, tags = [], []
        for literal, field in _FIELD.findall(template):
            literal_words = _words(literal)
            words += literal_words
            tags += ["O"] * len(literal_words)
            if field:
                value = _words(fills[field])
                words += value
                tags += [("B-" if j == 0 else "I-") + field for j in range(len(value))]
        out.append((words, tags, intent))
    return out


def write_bio_folder(root: str, n_train: int = 800, n_eval: int = 160, seed: int = 0,
                     languages: tuple[str, ...] = LANGUAGES) -> str:
    """A folder in the ATIS/SNIPS layout (train|dev|test/{seq.in,seq.out,label}) of `labelled_utterances`,
    for `config.finetune.bio_folder`."""
    import os
    rows = labelled_utterances(n_train + 2 * n_eval, seed, languages)
    for split, part in (("train", rows[:n_train]), ("dev", rows[n_train:n_train + n_eval]),
                        ("test", rows[n_train + n_eval:])):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        for name, column in (("seq.in", [" ".join(w) for w, _, _ in part]),
                             ("seq.out", [" ".join(t) for _, t, _ in part]), ("label", [i for _, _, i in part])):
            with open(os.path.join(root, split, name), "w", encoding="utf-8") as f:
                f.write("\n".join(column) + "\n")
    return root


_FIELD = re.compile(r"([^{]*)(?:\{(\w+)\}|$)")


def _words(text: str) -> list[str]:
    return [w for w in re.sub(r"[^\w'’:]+", " ", text.lower()).split() if w]
