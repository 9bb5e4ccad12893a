"""Language data written by the project: number words and per-language templates.

`NUMBER_WORDS` is also what `examples/train_tiny.py` writes the tiny checkpoint's multilingual
slice from (it imports this table). Every template is a `str.format` string;
`tests/test_transfer_*.py` renders each one in every language, so a missing key fails loudly.
"""

from __future__ import annotations

# Number words 0..20, index = number. Latin: en, de, fr, es; Cyrillic: ru; Han: zh;
# Arabic script: ar; Devanagari: hi.
NUMBER_WORDS: dict[str, list[str]] = {
    "en": [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
        "eighteen", "nineteen", "twenty",
    ],
    "de": [
        "null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun",
        "zehn", "elf", "zwölf", "dreizehn", "vierzehn", "fünfzehn", "sechzehn", "siebzehn",
        "achtzehn", "neunzehn", "zwanzig",
    ],
    "fr": [
        "zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix",
        "onze", "douze", "treize", "quatorze", "quinze", "seize", "dix-sept", "dix-huit",
        "dix-neuf", "vingt",
    ],
    "es": [
        "cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve",
        "diez", "once", "doce", "trece", "catorce", "quince", "dieciséis", "diecisiete",
        "dieciocho", "diecinueve", "veinte",
    ],
    "ru": [
        "ноль", "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять",
        "десять", "одиннадцать", "двенадцать", "тринадцать", "четырнадцать", "пятнадцать",
        "шестнадцать", "семнадцать", "восемнадцать", "девятнадцать", "двадцать",
    ],
    "zh": [
        "零", "一", "二", "三", "四", "五", "六", "七", "八", "九", "十",
        "十一", "十二", "十三", "十四", "十五", "十六", "十七", "十八", "十九", "二十",
    ],
    "ar": [
        "صفر", "واحد", "اثنان", "ثلاثة", "أربعة", "خمسة", "ستة", "سبعة", "ثمانية", "تسعة",
        "عشرة", "أحد عشر", "اثنا عشر", "ثلاثة عشر", "أربعة عشر", "خمسة عشر", "ستة عشر",
        "سبعة عشر", "ثمانية عشر", "تسعة عشر", "عشرون",
    ],
    "hi": [
        "शून्य", "एक", "दो", "तीन", "चार", "पाँच", "छह", "सात", "आठ", "नौ", "दस",
        "ग्यारह", "बारह", "तेरह", "चौदह", "पंद्रह", "सोलह", "सत्रह", "अठारह", "उन्नीस", "बीस",
    ],
}  # fmt: skip

LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "ru", "zh", "ar", "hi")

SCRIPTS: dict[str, str] = {
    "en": "Latin",
    "de": "Latin",
    "fr": "Latin",
    "es": "Latin",
    "ru": "Cyrillic",
    "zh": "Han",
    "ar": "Arabic",
    "hi": "Devanagari",
}

# "The number is {word}." — a frame with no agreement between the number and a noun, so it is
# grammatical for every number in every language.
NUMBER_SENTENCE: dict[str, str] = {
    "en": "The number is {word}.",
    "de": "Die Zahl ist {word}.",
    "fr": "Le nombre est {word}.",
    "es": "El número es {word}.",
    "ru": "Число — {word}.",
    "zh": "数字是{word}。",
    "ar": "الرقم هو {word}.",
    "hi": "संख्या {word} है।",
}

# MGSM-style two-step word problems with digits (as MGSM writes them). Each names a person, a
# count `{a}`, a gain `{b}` and a loss `{c}`; the answer is a + b - c. Phrased so that no noun
# has to agree with a number.
WORD_PROBLEM: dict[str, str] = {
    "en": (
        "{name} has a basket. The number of apples in it is {a}. {name} puts in {b} more "
        "apples and then eats {c}. How many apples are in the basket now?"
    ),
    "de": (
        "{name} hat einen Korb. Die Anzahl der Äpfel darin ist {a}. {name} legt {b} weitere "
        "Äpfel hinein und isst dann {c}. Wie viele Äpfel sind jetzt im Korb?"
    ),
    "fr": (
        "{name} a un panier. Le nombre de pommes dedans est {a}. {name} en ajoute {b} de plus "
        "puis en mange {c}. Combien de pommes y a-t-il maintenant dans le panier ?"
    ),
    "es": (
        "{name} tiene una cesta. El número de manzanas en ella es {a}. {name} pone {b} "
        "manzanas más y luego se come {c}. ¿Cuántas manzanas hay ahora en la cesta?"
    ),
    "ru": (
        "У {name_gen} есть корзина. Число яблок в ней: {a}. {name} кладёт туда ещё {b}, а потом "
        "съедает {c}. Сколько яблок в корзине теперь?"
    ),
    "zh": "{name}有一个篮子。篮子里的苹果数是{a}。{name}又放进{b}个苹果,然后吃了{c}个。现在篮子里有多少个苹果?",
    "ar": (
        "لدى {name} سلة. عدد التفاح فيها هو {a}. يضع {name} فيها {b} أخرى ثم يأكل {c}. "
        "كم عدد التفاح في السلة الآن؟"
    ),
    "hi": (
        "{name} के पास एक टोकरी है। उसमें सेबों की संख्या {a} है। {name} उसमें {b} और सेब "
        "डालता है और फिर {c} खा लेता है। अब टोकरी में कितने सेब हैं?"
    ),
}

ANSWER_WORD: dict[str, str] = {
    "en": "Answer:",
    "de": "Antwort:",
    "fr": "Réponse :",
    "es": "Respuesta:",
    "ru": "Ответ:",
    "zh": "答案:",
    "ar": "الجواب:",
    "hi": "उत्तर:",
}

NAMES: dict[str, tuple[str, ...]] = {
    "en": ("Tom", "Anna", "Sam"),
    "de": ("Lukas", "Anna", "Jonas"),
    "fr": ("Paul", "Marie", "Luc"),
    "es": ("Pablo", "Lucía", "Diego"),
    "ru": ("Иван", "Анна", "Павел"),
    "zh": ("小明", "小红", "小李"),
    "ar": ("سامي", "علي", "عمر"),
    "hi": ("राम", "मोहन", "अमित"),
}

# Every word-problem template may use `{name_gen}`, the name as it follows a preposition that
# governs the genitive; only Russian ("У Ивана ...") needs a form that differs from `{name}`.
GENITIVE: dict[str, str] = {"Иван": "Ивана", "Анна": "Анны", "Павел": "Павла"}

LANGUAGE_NAMES: dict[str, str] = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "ru": "Russian",
    "zh": "Chinese",
    "ar": "Arabic",
    "hi": "Hindi",
}
