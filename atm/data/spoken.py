"""ATM's spoken form: text as a speech recogniser would write it.

The ATM paper pretrains on 70% spoken-form text: lower case, no punctuation, numbers
as words ("Wake me at 9:30!" -> "wake me at nine thirty"). `spoken_form` does that:

1. NFKC normalisation (full-width digits become ASCII), curly apostrophes -> "'";
2. lower case (str.lower; German "ß" stays);
3. numbers to words, per language (`lang`, e.g. "en", "en-US", "de_DE"). The cardinals come from
   num2words (`NUMBER_WORD_LANGUAGES`: 43 of the 44 languages it covers, ru, ar, pl, ja, ko, tr, vi, th, ...),
   with hyphens and commas as spaces; English drops "and" ("101" -> "one hundred one") and Spanish
   shortens "uno" before "mil"/"millones" ("21000" -> "veintiún mil"). atm's own rules add what
   num2words has not:
   - en: times ("9:30" -> "nine thirty", "9:05" -> "nine oh five", "9:00" -> "nine o'clock", "7am" /
     "7 a.m." -> "seven am"), ordinals ("21st" -> "twenty first"), decimals ("3.5" -> "three point
     five"), years after "in", "since", a month, ... ("in 1990" -> "in nineteen ninety"), decades
     ("1990s" -> "nineteen nineties"), currency ("$5.50" -> "five dollars and fifty cents"), percent,
     degrees, negatives, grouped thousands ("1,000");
   - de, fr, es: decimals with a comma, grouped thousands ("1.000"), times ("21:30" -> de
     "einundzwanzig uhr dreißig", fr "21h30" -> "vingt et une heures trente", es "veintiuno y
     treinta"), percent, euros/dollars, negatives;
   - the other num2words languages: digit runs become cardinals, and "3.5" / "3,5" becomes
     "<three> <point word> <five>" where num2words names a plain point word (ru and ar have none:
     their two parts are read as two numbers); no times, currency or grouped thousands;
   - in every language, digit strings with a leading zero or over 9 digits are read digit by digit
     ("007" -> "zero zero seven"), as are numbers beyond a language's converter (te, kn: 10^10).
   Languages num2words does not cover keep their digits; among atm's corpus languages (MLM text, XNLI,
   TyDi QA, PAN-X, MASSIVE) those are zh, hi, sw, bg, el and ur (`DIGIT_LANGUAGES`); Amharic keeps them too
   (num2words' Amharic converter hangs on some numbers).
4. punctuation and symbols removed (Unicode categories P* and S* become spaces), except an
   apostrophe inside a word ("what's", "o'clock" stay, as in MASSIVE's utterances); hyphens
   split words ("take-out" -> "take out"). Combining marks (Devanagari vowel signs, ...) stay.
5. whitespace collapsed.
"""
from __future__ import annotations

import re
import unicodedata

from num2words import CONVERTER_CLASSES, num2words

# ----------------------------------------------------------------- number words: num2words
# num2words writes the cardinals ("twenty-one", "cent vingt et un"); `cardinal` puts them in spoken form (lower
# case, hyphens and commas as spaces) with two fixes: English drops "and" as ASR transcripts do ("one hundred
# one"), Spanish shortens "uno" before "mil"/"millones" ("veintiún mil"), which num2words does not.
# Amharic is left out: num2words 0.5.14's converter loops forever on some numbers (123456789) and fails on others.
_BROKEN_CONVERTERS = ("am",)
NUMBER_WORD_LANGUAGES = tuple(sorted(lang for lang in CONVERTER_CLASSES if "_" not in lang and lang not in _BROKEN_CONVERTERS))
SUPPORTED_LANGUAGES = NUMBER_WORD_LANGUAGES  # the languages whose numbers become words; the rest keep digits
# atm's corpus languages (atm.data.tasks, MASSIVE's sw-KE) that keep their digits: num2words has no converter.
DIGIT_LANGUAGES = ("bg", "el", "hi", "sw", "ur", "zh")
_ES_APOCOPE = re.compile(r"\b(veinti)?uno (?=(?:mil|millones|billones)\b)")
_FIXES = {
    "en": lambda words: " ".join(w for w in words.split() if w != "and"),
    "es": lambda words: _ES_APOCOPE.sub(lambda m: "veintiún " if m.group(1) else "un ", words),
}


def _cardinal(lang: str):
    def cardinal(n: int) -> str:
        words = unicodedata.normalize("NFKC", num2words(n, lang=lang)).lower().replace("-", " ").replace(",", " ")
        words = " ".join(words.split())
        return _FIXES.get(lang, str)(words)
    return cardinal


def _en_ordinal(n: int) -> str:
    return " ".join(num2words(n, lang="en", to="ordinal").replace("-", " ").replace(",", " ").split()).replace(
        " and ", " ")


def _en_year(n: int) -> str:
    if 2000 <= n <= 2009 or n % 1000 == 0:
        return _CARDINAL["en"](n)
    high, low = divmod(n, 100)
    if low == 0:
        return _CARDINAL["en"](high) + " hundred"
    return _CARDINAL["en"](high) + " " + ("oh " if low < 10 else "") + _CARDINAL["en"](low)


def _plural(words: str) -> str:
    head, _, last = words.rpartition(" ")
    last = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return (head + " " + last).strip()


_CARDINAL = {lang: _cardinal(lang) for lang in NUMBER_WORD_LANGUAGES}
_MAX = 10**18  # and whatever a language's num2words converter accepts (te, kn: below 10^10)
_WORDS = {  # atm's own: languages with times, currency and symbol words  # per language: decimal point, percent, degrees, and, plus
    "en": {"point": "point", "%": "percent", "°": "degrees", "&": "and", "+": "plus", "@": "at"},
    "de": {"point": "komma", "%": "prozent", "°": "grad", "&": "und", "+": "plus"},
    "fr": {"point": "virgule", "%": "pour cent", "°": "degrés", "&": "et", "+": "plus"},
    "es": {"point": "coma", "%": "por ciento", "°": "grados", "&": "y", "+": "más"},
}
_CURRENCY = {  # symbol -> (singular, plural, cents singular, cents plural)
    "en": {"$": ("dollar", "dollars", "cent", "cents"), "€": ("euro", "euros", "cent", "cents"),
           "£": ("pound", "pounds", "penny", "pence"), "¥": ("yen", "yen", "", "")},
    "de": {"$": ("dollar", "dollar", "cent", "cent"), "€": ("euro", "euro", "cent", "cent")},
    "fr": {"$": ("dollar", "dollars", "centime", "centimes"), "€": ("euro", "euros", "centime", "centimes")},
    "es": {"$": ("dólar", "dólares", "centavo", "centavos"), "€": ("euro", "euros", "céntimo", "céntimos")},
}
_YEAR_CONTEXT = set("in since of from until till by before after circa year around".split()) | set(
    "january february march april may june july august september october november december".split())


def number_to_words(n: int, lang: str = "en") -> str:
    """Cardinal number words in spoken form ("21" -> "twenty one"); ValueError for a language num2words does
    not cover or a number too large for it."""
    lang = _base_language(lang)
    if lang not in _CARDINAL:
        raise ValueError(f"no number words for language {lang!r}; num2words covers {', '.join(NUMBER_WORD_LANGUAGES)}")
    if abs(n) >= _MAX:
        raise ValueError(f"{n} is too large for {lang} number words")
    try:
        return _CARDINAL[lang](n)
    except (OverflowError, NotImplementedError) as e:
        raise ValueError(f"{n} is too large for {lang} number words ({e})") from None


def _base_language(lang: str) -> str:
    return (lang or "").replace("_", "-").split("-")[0].lower()


# ------------------------------------------------------------------ the converter
class _Converter:
    """Number patterns of one language, applied in order of specificity."""

    def __init__(self, lang: str):
        self.lang = lang
        self.cardinal = _CARDINAL[lang]
        self.digit_names = [self.cardinal(d) for d in range(10)]
        if lang not in _WORDS:  # num2words' cardinals only: integers, and decimals where it has a point word
            point = getattr(CONVERTER_CLASSES[lang], "pointword", None)
            self.words = {"point": point} if isinstance(point, str) and point.strip("() .") else {}
            self.number = r"\d+(?:[.,]\d+)?" if self.words else r"\d+"
            self.group, self.decimal = "\0", "." if self.words else "\0"
            self.rules = [(re.compile(self.number), lambda m: self._number(m.group(0).replace(",", ".")))]
            return
        self.words = _WORDS[lang]
        if lang == "en":  # 1,234.5
            self.number = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
            self.group, self.decimal = ",", "."
        else:  # 1.234,5
            self.number = r"\d{1,3}(?:\.\d{3})+(?:,\d+)?|\d+(?:,\d+)?"
            self.group, self.decimal = ".", ","
        symbols = "".join(re.escape(s) for s in _CURRENCY[lang])
        n = self.number
        rules = [
            (r"(?:(?<=\s)|^)-(?=\d)", lambda m: _MINUS[lang] + " "),
            (rf"([{symbols}])\s?({n})(?!\d)", lambda m: self._money(m.group(2), m.group(1))),
            (rf"(?<![\d.,])({n})\s?([{symbols}])", lambda m: self._money(m.group(1), m.group(2))),
        ]
        if lang == "en":
            rules += [
                (r"(?<![\d:])(\d{1,2})(?::(\d{2}))?\s?([ap])\.?\s?m\b\.?",
                 lambda m: self._time(m.group(1), m.group(2), suffix=f"{m.group(3)}m")),
                (r"(?<![\d:])(\d{1,2}):(\d{2})(?![\d:])", lambda m: self._time(m.group(1), m.group(2))),
                (r"(?<!\d)(\d+)(st|nd|rd|th)\b", lambda m: _en_ordinal(int(m.group(1)))),
                (r"(?<![\d.,])(\d*0)'?s\b", self._decade),
            ]
        elif lang == "de":
            rules += [
                (r"(?<![\d:])(\d{1,2}):(\d{2})(?:\s?uhr\b)?(?![\d:])", lambda m: self._time(m.group(1), m.group(2))),
                (r"(?<![\d:.,])(\d{1,2})\.(\d{2})\s?uhr\b", lambda m: self._time(m.group(1), m.group(2))),
                (r"(?<![\d:.,])(\d{1,2})\s?uhr\b", lambda m: self._time(m.group(1), None)),
            ]
        elif lang == "fr":
            rules.append((r"(?<![\d:])(\d{1,2})\s?(?:h|:)(\d{2})?(?!\w)",
                          lambda m: self._time(m.group(1), m.group(2))))
        elif lang == "es":
            rules.append((r"(?<![\d:])(\d{1,2}):(\d{2})(?![\d:])", lambda m: self._time(m.group(1), m.group(2))))
        rules += [
            (rf"(?<![\d.,])({n})\s?%", lambda m: self._number(m.group(1)) + " " + self.words["%"]),
            (rf"(?<![\d.,])({n})\s?°", lambda m: self._number(m.group(1)) + " " + self.words["°"]),
            (rf"(?<!\d)({n})", lambda m: self._number(m.group(1), m)),
        ]
        self.rules = [(re.compile(pattern), fn) for pattern, fn in rules]

    def __call__(self, text: str) -> str:
        for pattern, fn in self.rules:
            text = pattern.sub(lambda m: " " + fn(m) + " ", text)
        return text

    def _number(self, digits: str, match=None) -> str:
        integer, _, fraction = digits.partition(self.decimal)
        grouped = self.group in integer
        integer = integer.replace(self.group, "")
        if fraction:
            return (self._integer(integer, grouped, match) + " " + self.words["point"] + " "
                    + " ".join(self.digit_names[int(d)] for d in fraction))
        return self._integer(integer, grouped, match)

    def _integer(self, digits: str, grouped: bool, match=None) -> str:
        n = int(digits)
        if not grouped and ((len(digits) > 1 and digits[0] == "0") or len(digits) > 9 or n >= _MAX):
            return " ".join(self.digit_names[int(d)] for d in digits)
        if self.lang == "en" and match is not None and len(digits) == 4 and 1100 <= n <= 2099:
            before = match.string[:match.start()].split()
            if before and before[-1] in _YEAR_CONTEXT:
                return _en_year(n)
        try:
            return self.cardinal(n)
        except (OverflowError, NotImplementedError):  # beyond this language's num2words converter
            return " ".join(self.digit_names[int(d)] for d in digits)

    def _money(self, amount: str, symbol: str) -> str:
        one, many, cent, cents = _CURRENCY[self.lang][symbol]
        integer, _, fraction = amount.partition(self.decimal)
        value = int(integer.replace(self.group, ""))
        words = self.cardinal(value) + " " + (one if value == 1 else many)
        if fraction and cent and len(fraction) <= 2:
            hundredths = int(fraction.ljust(2, "0"))
            if hundredths:
                words += f" {_AND[self.lang]} " + self.cardinal(hundredths) + " " + (cent if hundredths == 1 else cents)
        elif fraction:
            words = self._number(amount) + " " + many
        return words

    def _time(self, hours: str, minutes, suffix: str = "") -> str:
        h, mm = int(hours), int(minutes or 0)
        if h > 24 or mm > 59:
            return self._number(hours) + (" " + self._number(minutes) if minutes else "") + (" " + suffix if suffix else "")
        if self.lang == "en":
            if mm == 0:
                words = self.cardinal(h) + ("" if suffix else " o'clock")
            else:
                words = self.cardinal(h) + " " + ("oh " if mm < 10 else "") + self.cardinal(mm)
            return words + (" " + suffix if suffix else "")
        if self.lang == "de":
            hour = "ein" if h == 1 else self.cardinal(h)
            return f"{hour} uhr" + (" " + self.cardinal(mm) if mm else "")
        if self.lang == "fr":
            hour = self.cardinal(h)
            hour = hour[:-2] + "une" if hour.endswith("un") else hour
            return hour + (" heure" if h <= 1 else " heures") + (" " + self.cardinal(mm) if mm else "")
        return self.cardinal(h) + (" y " + self.cardinal(mm) if mm else "")

    def _decade(self, match) -> str:
        digits = match.group(1)
        if not digits or int(digits) == 0:
            return match.group(0)
        n = int(digits)
        words = _en_year(n) if len(digits) == 4 and 1100 <= n <= 2099 else self.cardinal(n)
        return _plural(words)


_MINUS = {"en": "minus", "de": "minus", "fr": "moins", "es": "menos"}
_AND = {"en": "and", "de": "und", "fr": "et", "es": "con"}
_CONVERTERS: dict[str, _Converter] = {}
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'"})


def _converter(lang: str):
    if lang not in _CONVERTERS:
        _CONVERTERS[lang] = _Converter(lang)
    return _CONVERTERS[lang]


def _strip_punctuation(text: str, symbol_words: dict) -> str:
    out = []
    for i, c in enumerate(text):
        category = unicodedata.category(c)
        if c == "'":
            keep = 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()
            out.append(c if keep else " ")
        elif c in symbol_words:
            out.append(" " + symbol_words[c] + " ")
        elif category[0] in "PS":
            out.append(" ")
        else:
            out.append(c)
    return "".join(out)


def spoken_form(text: str, lang: str = "en") -> str:
    """`text` in ATM's spoken form (see the module docstring); `lang` picks the number words."""
    lang = _base_language(lang)
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower()
    if lang in _CARDINAL:
        text = _converter(lang)(text)
        symbol_words = {k: v for k, v in _WORDS.get(lang, {}).items() if len(k) == 1}
    else:
        symbol_words = {}
    return " ".join(_strip_punctuation(text, symbol_words).split())
