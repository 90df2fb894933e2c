"""Word lists of the synthetic tweet generator: per language, a head of common real words followed by made-up
words in the language's script, plus hashtags and user names.

Deterministic: built from a fixed seed, so every run and every seed of `synth` shares one vocabulary (demo
queries can rely on the head words). Never read files or the clock here.
"""

from __future__ import annotations

import random
from functools import cache

WORDS_PER_LANG = 1500
USERS = 3000
HASHTAGS = 600
_VOCAB_SEED = 20200101

COMMON: dict[str, list[str]] = {
    "en": (
        "the I to a and is in it you of for on my that me so have this just but with be at not was day "
        "all good love now get like what can go out up today no do know new one time about your got too "
        "want back lol going work great home night morning happy really people thanks see think music "
        "coffee weekend game news world city team free best life first last school friends rain summer"
    ).split(),
    "es": (
        "de la que el en y a los se del las un por con no una su para es al lo como más pero sus le ya "
        "o este sí porque esta entre cuando muy sin sobre también me hasta hay donde quien desde todo "
        "nos durante todos uno les ni contra otros ese eso ante ellos e esto mí antes algunos qué unos "
        "hoy mañana amor vida gracias fútbol música noche día casa"
    ).split(),
    "fr": (
        "de la le et les des en un du une que est pour qui dans a par plus pas au sur ne se ce il sont "
        "avec son mais on ou comme nous tout aussi été vous bien ses fait très aujourd hui merci demain "
        "soir matin amour vie musique ville temps monde travail café week end"
    ).split(),
    "de": (
        "der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an "
        "werden aus er hat dass sie nach wird bei einer um am sind noch wie einem über einen so zum "
        "heute morgen danke liebe leben musik stadt zeit welt arbeit kaffee wochenende spiel"
    ).split(),
    "ru": (
        "и в не на я быть он с что а по это она этот к но они мы как из у который то за свой весь год "
        "от так о для ты же все тот мочь вы человек такой его сказать только или ещё бы себя один как "
        "сегодня завтра спасибо любовь жизнь музыка город время мир работа кофе новости"
    ).split(),
    "ja": (
        "今日 明日 東京 日本 仕事 時間 友達 音楽 映画 写真 ラーメン コーヒー ありがとう おはよう おやすみ "
        "かわいい すごい 楽しい 本当 大好き 天気 電車 会社 学校 週末 ニュース 試合 ゲーム アニメ 猫 犬 "
        "桜 夏 冬 雨 朝 夜 ご飯 家"
    ).split(),
}

_SYLLABLES: dict[str, list[str]] = {
    "en": "ba be bi bo bu ca co da de di do fa fe fi fo ga go ha he hi ho ja ka ke ki la le li lo lu ma me mi "
    "mo na ne ni no pa pe pi po ra re ri ro sa se si so ta te ti to va ve vi wa we wi ya yo za ze ing er "
    "ly st th sh ch".split(),
    "es": "ba be bi bo ca ce ci co da de di do fa fe fi ga go ja je la le li lo ma me mi mo na ne ni no ña "
    "ñe pa pe pi po que qui ra re ri ro sa se si so ta te ti to va ve vi za zo ción dad llo rra".split(),
    "fr": "ba be bi bo ca ce ci co da de di do fa fe fi ga ge gi la le li lo ma me mi mo na ne ni no pa pe pi "
    "po ra re ri ro sa se si so ta te ti to va ve vi é è ê ou eau oi ai eu ch gn".split(),
    "de": "ba be bi bo da de di do fa fe fi ga ge gi ha he hi ka ke ki la le li lo ma me mi mo na ne ni no "
    "pa pe ra re ri ro sa se si so ta te ti to wa we wi ä ö ü ß sch ch ei au en er".split(),
    "ru": "ба бе би бо ва ве ви во га го да де ди до жа за зе ка ке ки ко ла ле ли ло ма ме ми мо на не ни "
    "но па пе по ра ре ри ро са се си со та те ти то у фа ха ца ча ша ща ы ю я ь й".split(),
    "ja": list("あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわん")
    + list("アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモラリルレロン")
    + list("日月火水木金土山川田人大小中上下年時本学生先名"),
}

LANGS = tuple(COMMON)


def _made_up(rng: random.Random, lang: str, seen: set[str]) -> str:
    syl = _SYLLABLES[lang]
    lo, hi = (1, 3) if lang == "ja" else (2, 4)
    while True:
        w = "".join(rng.choice(syl) for _ in range(rng.randint(lo, hi)))
        if w not in seen and len(w) >= 2:
            seen.add(w)
            return w


@cache
def words(lang: str) -> tuple[str, ...]:
    """WORDS_PER_LANG words of `lang`, most frequent first: the common words, then made-up ones."""
    rng = random.Random(f"{_VOCAB_SEED}:{lang}")
    head = list(dict.fromkeys(COMMON[lang]))
    seen = set(head)
    return tuple(head + [_made_up(rng, lang, seen) for _ in range(WORDS_PER_LANG - len(head))])


@cache
def hashtags() -> tuple[str, ...]:
    """Hashtags without '#', most frequent first (ASCII so they can be typed in a demo query)."""
    rng = random.Random(f"{_VOCAB_SEED}:tags")
    head = ["news", "love", "music", "travel", "photo", "football", "coffee", "tbt", "python", "weekend"]
    seen = set(head)
    out = list(head)
    while len(out) < HASHTAGS:
        w = _made_up(rng, "en", seen)
        out.append(w.capitalize() if rng.random() < 0.3 else w)
    return tuple(out)


@cache
def users() -> tuple[str, ...]:
    """Screen names (letters, digits, '_', at most 15 characters, like Twitter's)."""
    rng = random.Random(f"{_VOCAB_SEED}:users")
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < USERS:
        base = _made_up(rng, "en", set())[:10]
        name = (
            base
            + (str(rng.randint(0, 999)) if rng.random() < 0.5 else "")
            + ("_" if rng.random() < 0.1 else "")
        )
        if name not in seen:  # distinct even casefolded: `from:` compares casefolded names
            seen.add(name)
            out.append(name.capitalize() if rng.random() < 0.3 else name)
    return tuple(out)
