"""ATM's spoken form: text as a speech recogniser would write it.

The ATM paper pretrains on 70% spoken-form text: lower case, no punctuation, numbers
as words ("Wake me at 9:30!" -> "wake me at nine thirty"). `spoken_form` does that:

1. NFKC normalisation (full-width digits become ASCII), curly apostrophes -> "'";
2. lower case (str.lower; German "ß" stays);
3. numbers to words, per language (`lang`, e.g. "en", "en-US", "de_DE"):
   - en: cardinals ("21" -> "twenty one", "1,000" -> "one thousand"), times ("9:30" ->
     "nine thirty", "9:05" -> "nine oh five", "9:00" -> "nine o'clock", "7am" / "7 a.m." ->
     "seven am"), ordinals ("21st" -> "twenty first"), decimals ("3.5" -> "three point five"),
     years after "in", "since", a month, ... ("in 1990" -> "in nineteen ninety"), decades
     ("1990s" -> "nineteen nineties"), currency ("$5.50" -> "five dollars and fifty cents"),
     percent, degrees, negatives; digit strings with a leading zero or over 9 digits are read
     digit by digit ("007" -> "zero zero seven");
   - de, fr, es: cardinals below 10^9, decimals with a comma, times ("21:30" -> de
     "einundzwanzig uhr dreißig", fr "21h30" -> "vingt et une heures trente", es "veintiuno y
     treinta"), percent, euros/dollars;
   - other languages: digits are left as they are.
4. punctuation and symbols removed (Unicode categories P* and S* become spaces), except an
   apostrophe inside a word ("what's", "o'clock" stay, as in MASSIVE's utterances); hyphens
   split words ("take-out" -> "take out"). Combining marks (Devanagari vowel signs, ...) stay.
5. whitespace collapsed.
"""
from __future__ import annotations

import re
import unicodedata

SUPPORTED_LANGUAGES = ("en", "de", "fr", "es")

# ------------------------------------------------------------------------ English
_EN_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
            "fifteen sixteen seventeen eighteen nineteen").split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_EN_SCALES = ((10**15, "quadrillion"), (10**12, "trillion"), (10**9, "billion"), (10**6, "million"),
              (1000, "thousand"))
_EN_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
               "nine": "ninth", "twelve": "twelfth"}


def _en_cardinal(n: int) -> str:
    if n < 0:
        return "minus " + _en_cardinal(-n)
    if n < 20:
        return _EN_ONES[n]
    if n < 100:
        return _EN_TENS[n // 10] + (" " + _EN_ONES[n % 10] if n % 10 else "")
    if n < 1000:
        return _EN_ONES[n // 100] + " hundred" + (" " + _en_cardinal(n % 100) if n % 100 else "")
    for value, name in _EN_SCALES:
        if n >= value:
            return _en_cardinal(n // value) + " " + name + (" " + _en_cardinal(n % value) if n % value else "")
    raise AssertionError(n)


def _en_ordinal(n: int) -> str:
    words = _en_cardinal(n).split()
    last = words[-1]
    words[-1] = _EN_ORDINAL.get(last) or (last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return " ".join(words)


def _en_year(n: int) -> str:
    if 2000 <= n <= 2009 or n % 1000 == 0:
        return _en_cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return _en_cardinal(high) + " hundred"
    return _en_cardinal(high) + " " + ("oh " if low < 10 else "") + _en_cardinal(low)


def _plural(words: str) -> str:
    head, _, last = words.rpartition(" ")
    last = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return (head + " " + last).strip()


# ------------------------------------------------------------------------- German
_DE_ONES = ("null eins zwei drei vier fünf sechs sieben acht neun zehn elf zwölf dreizehn vierzehn "
            "fünfzehn sechzehn siebzehn achtzehn neunzehn").split()
_DE_TENS = "_ _ zwanzig dreißig vierzig fünfzig sechzig siebzig achtzig neunzig".split()


def _de_compound(n: int) -> str:
    """1..999999 as one word; a leading 1 is "ein" (einhundert, einundzwanzig)."""
    if n == 1:
        return "ein"
    if n < 20:
        return _DE_ONES[n]
    if n < 100:
        unit = n % 10
        return (("ein" if unit == 1 else _DE_ONES[unit]) + "und" if unit else "") + _DE_TENS[n // 10]
    if n < 1000:
        rest = n % 100
        return _de_compound(n // 100) + "hundert" + (_de_cardinal(rest) if rest else "")
    rest = n % 1000
    return _de_compound(n // 1000) + "tausend" + (_de_cardinal(rest) if rest else "")


def _de_cardinal(n: int) -> str:
    if n < 0:
        return "minus " + _de_cardinal(-n)
    if n < 10**6:
        return _DE_ONES[n] if n < 20 else _de_compound(n)
    millions, rest = divmod(n, 10**6)
    head = "eine million" if millions == 1 else _de_cardinal(millions) + " millionen"
    return head + (" " + _de_cardinal(rest) if rest else "")


# ------------------------------------------------------------------------- French
_FR_ONES = ("zéro un deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze quinze "
            "seize").split()
_FR_TENS = "_ _ vingt trente quarante cinquante soixante".split()


def _fr_below_20(n: int) -> str:
    return _FR_ONES[n] if n <= 16 else "dix " + _FR_ONES[n - 10]


def _fr_cardinal(n: int) -> str:
    if n < 0:
        return "moins " + _fr_cardinal(-n)
    if n < 20:
        return _fr_below_20(n)
    if n < 100:
        tens, unit = divmod(n, 10)
        if tens <= 6:
            return _FR_TENS[tens] + ("" if unit == 0 else " et un" if unit == 1 else " " + _FR_ONES[unit])
        if tens == 7:
            return "soixante " + ("et onze" if unit == 1 else _fr_below_20(10 + unit))
        if tens == 8:
            return "quatre vingts" if unit == 0 else "quatre vingt " + _FR_ONES[unit]
        return "quatre vingt " + _fr_below_20(10 + unit)
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        head = "cent" if hundreds == 1 else _FR_ONES[hundreds] + " cent" + ("s" if rest == 0 else "")
        return head + (" " + _fr_cardinal(rest) if rest else "")
    if n < 10**6:
        thousands, rest = divmod(n, 1000)
        head = "mille" if thousands == 1 else _fr_cardinal(thousands).removesuffix("s") + " mille"
        return head + (" " + _fr_cardinal(rest) if rest else "")
    millions, rest = divmod(n, 10**6)
    head = "un million" if millions == 1 else _fr_cardinal(millions) + " millions"
    return head + (" " + _fr_cardinal(rest) if rest else "")


# ------------------------------------------------------------------------ Spanish
_ES_ONES = ("cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince "
            "dieciséis diecisiete dieciocho diecinueve veinte veintiuno veintidós veintitrés veinticuatro "
            "veinticinco veintiséis veintisiete veintiocho veintinueve").split()
_ES_TENS = "_ _ _ treinta cuarenta cincuenta sesenta setenta ochenta noventa".split()
_ES_HUNDREDS = ("_ ciento doscientos trescientos cuatrocientos quinientos seiscientos setecientos "
                "ochocientos novecientos").split()


def _es_apocope(words: str) -> str:  # "veintiuno mil" -> "veintiún mil", "uno mil" never happens
    return words[:-len("veintiuno")] + "veintiún" if words.endswith("veintiuno") else (
        words[:-3] + "un" if words.endswith("uno") else words)


def _es_cardinal(n: int) -> str:
    if n < 0:
        return "menos " + _es_cardinal(-n)
    if n < 30:
        return _ES_ONES[n]
    if n < 100:
        tens, unit = divmod(n, 10)
        return _ES_TENS[tens] + (" y " + _ES_ONES[unit] if unit else "")
    if n < 1000:
        if n == 100:
            return "cien"
        hundreds, rest = divmod(n, 100)
        return _ES_HUNDREDS[hundreds] + (" " + _es_cardinal(rest) if rest else "")
    if n < 10**6:
        thousands, rest = divmod(n, 1000)
        head = "mil" if thousands == 1 else _es_apocope(_es_cardinal(thousands)) + " mil"
        return head + (" " + _es_cardinal(rest) if rest else "")
    millions, rest = divmod(n, 10**6)
    head = "un millón" if millions == 1 else _es_apocope(_es_cardinal(millions)) + " millones"
    return head + (" " + _es_cardinal(rest) if rest else "")


_CARDINAL = {"en": _en_cardinal, "de": _de_cardinal, "fr": _fr_cardinal, "es": _es_cardinal}
_MAX = {"en": 10**18, "de": 10**9, "fr": 10**9, "es": 10**9}
_DIGIT_NAMES = {lang: [f(d) for d in range(10)] for lang, f in _CARDINAL.items()}
_WORDS = {  # per language: decimal point, percent, degrees, and, plus
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
    """Cardinal number words ("21" -> "twenty one"); ValueError for an unsupported language."""
    lang = _base_language(lang)
    if lang not in _CARDINAL:
        raise ValueError(f"no number words for language {lang!r}; supported: {SUPPORTED_LANGUAGES}")
    if abs(n) >= _MAX[lang]:
        raise ValueError(f"{n} is too large for {lang} number words")
    return _CARDINAL[lang](n)


def _base_language(lang: str) -> str:
    return (lang or "").replace("_", "-").split("-")[0].lower()


# ------------------------------------------------------------------ the converter
class _Converter:
    """Number patterns of one language, applied in order of specificity."""

    def __init__(self, lang: str):
        self.lang = lang
        self.cardinal = _CARDINAL[lang]
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
                    + " ".join(_DIGIT_NAMES[self.lang][int(d)] for d in fraction))
        return self._integer(integer, grouped, match)

    def _integer(self, digits: str, grouped: bool, match=None) -> str:
        n = int(digits)
        if not grouped and ((len(digits) > 1 and digits[0] == "0") or len(digits) > 9 or n >= _MAX[self.lang]):
            return " ".join(_DIGIT_NAMES[self.lang][int(d)] for d in digits)
        if self.lang == "en" and match is not None and len(digits) == 4 and 1100 <= n <= 2099:
            before = match.string[:match.start()].split()
            if before and before[-1] in _YEAR_CONTEXT:
                return _en_year(n)
        return self.cardinal(n)

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
                words = _en_cardinal(h) + ("" if suffix else " o'clock")
            else:
                words = _en_cardinal(h) + " " + ("oh " if mm < 10 else "") + _en_cardinal(mm)
            return words + (" " + suffix if suffix else "")
        if self.lang == "de":
            hour = "ein" if h == 1 else _de_cardinal(h)
            return f"{hour} uhr" + (" " + _de_cardinal(mm) if mm else "")
        if self.lang == "fr":
            hour = _fr_cardinal(h)
            hour = hour[:-2] + "une" if hour.endswith("un") else hour
            return hour + (" heure" if h <= 1 else " heures") + (" " + _fr_cardinal(mm) if mm else "")
        return _es_cardinal(h) + (" y " + _es_cardinal(mm) if mm else "")

    def _decade(self, match) -> str:
        digits = match.group(1)
        if not digits or int(digits) == 0:
            return match.group(0)
        n = int(digits)
        words = _en_year(n) if len(digits) == 4 and 1100 <= n <= 2099 else _en_cardinal(n)
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
        symbol_words = {k: v for k, v in _WORDS[lang].items() if len(k) == 1}
    else:
        symbol_words = {}
    return " ".join(_strip_punctuation(text, symbol_words).split())
