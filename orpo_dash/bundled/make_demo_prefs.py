"""Generate the bundled demo preference set, orpo_dash/bundled/orpo_demo_prefs.jsonl.

Pure Python, seeded, no network:  python orpo_dash/bundled/make_demo_prefs.py [--seed 1234] [--out PATH]
The same seed gives a byte-identical file. See README.md next to this file for what the data teaches.

Every pair follows one house style, the preference the demo run should learn:

  chosen   = a correct, direct answer that states the result in one short sentence (or the
             requested list), then closes with a one-line "Answer: <result>" tag;
  rejected = a plausible but WRONG answer in the chatty style the bundled model prefers out of the
             box (a friendly opener, no answer tag), of about the same length.

Facts are kept in small tables below; pairs are generated from them (prompt wordings, item
choices, arithmetic operands and distractors are all drawn from a seeded RNG).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "orpo_demo_prefs.jsonl"

# --------------------------------------------------------------------------- fact tables
# (country, capital, a larger or better-known city that is NOT the capital)
CAPITALS = [
    ("Australia", "Canberra", "Sydney"), ("Canada", "Ottawa", "Toronto"), ("Brazil", "Brasília", "Rio de Janeiro"),
    ("Turkey", "Ankara", "Istanbul"), ("Switzerland", "Bern", "Zurich"), ("New Zealand", "Wellington", "Auckland"),
    ("Nigeria", "Abuja", "Lagos"), ("Morocco", "Rabat", "Casablanca"), ("Pakistan", "Islamabad", "Karachi"),
    ("Vietnam", "Hanoi", "Ho Chi Minh City"), ("India", "New Delhi", "Mumbai"), ("China", "Beijing", "Shanghai"),
    ("Japan", "Tokyo", "Osaka"), ("Italy", "Rome", "Milan"), ("Spain", "Madrid", "Barcelona"),
    ("Germany", "Berlin", "Munich"), ("Egypt", "Cairo", "Alexandria"), ("Kenya", "Nairobi", "Mombasa"),
    ("Ecuador", "Quito", "Guayaquil"), ("Colombia", "Bogotá", "Medellín"), ("Peru", "Lima", "Cusco"),
    ("Chile", "Santiago", "Valparaíso"), ("Argentina", "Buenos Aires", "Córdoba"), ("Mexico", "Mexico City", "Guadalajara"),
    ("Russia", "Moscow", "Saint Petersburg"), ("Poland", "Warsaw", "Kraków"), ("Portugal", "Lisbon", "Porto"),
    ("Belgium", "Brussels", "Antwerp"), ("Austria", "Vienna", "Salzburg"), ("Greece", "Athens", "Thessaloniki"),
    ("Norway", "Oslo", "Bergen"), ("Sweden", "Stockholm", "Gothenburg"), ("Finland", "Helsinki", "Tampere"),
    ("Denmark", "Copenhagen", "Aarhus"), ("Ireland", "Dublin", "Cork"), ("South Korea", "Seoul", "Busan"),
    ("Thailand", "Bangkok", "Chiang Mai"), ("Saudi Arabia", "Riyadh", "Jeddah"),
    ("the United Arab Emirates", "Abu Dhabi", "Dubai"), ("Iran", "Tehran", "Isfahan"), ("Ghana", "Accra", "Kumasi"),
    ("Ethiopia", "Addis Ababa", "Dire Dawa"), ("Hungary", "Budapest", "Debrecen"), ("the Czech Republic", "Prague", "Brno"),
    ("Cuba", "Havana", "Santiago de Cuba"), ("Jamaica", "Kingston", "Montego Bay"), ("Iceland", "Reykjavík", "Akureyri"),
    ("Kazakhstan", "Astana", "Almaty"), ("France", "Paris", "Lyon"), ("the United Kingdom", "London", "Manchester"),
    ("the United States", "Washington, D.C.", "New York City"), ("Scotland", "Edinburgh", "Glasgow"),
]

# (element, symbol, a plausible wrong symbol)
ELEMENTS = [
    ("gold", "Au", "Go"), ("silver", "Ag", "Si"), ("iron", "Fe", "Ir"), ("sodium", "Na", "So"), ("potassium", "K", "P"),
    ("lead", "Pb", "Le"), ("copper", "Cu", "Co"), ("tin", "Sn", "Ti"), ("mercury", "Hg", "Me"), ("tungsten", "W", "Tu"),
    ("oxygen", "O", "Ox"), ("hydrogen", "H", "Hy"), ("carbon", "C", "Ca"), ("nitrogen", "N", "Ni"), ("helium", "He", "H"),
    ("calcium", "Ca", "C"), ("chlorine", "Cl", "Ch"), ("magnesium", "Mg", "Ma"), ("zinc", "Zn", "Zi"), ("neon", "Ne", "N"),
    ("sulfur", "S", "Su"), ("phosphorus", "P", "Ph"), ("aluminium", "Al", "Am"), ("silicon", "Si", "S"),
]

# (term, short correct definition) -- the rejected answer borrows the definition of another term
# from the same group, so it is fluent and on-topic but wrong.
DEFINITION_GROUPS = [
    [
        ("photosynthesis", "the process by which plants use light to make sugar from carbon dioxide and water"),
        ("respiration", "the process by which cells break down sugar to release energy"),
        ("evaporation", "the change of a liquid into a gas at its surface"),
        ("condensation", "the change of a gas into a liquid as it cools"),
        ("erosion", "the wearing away of rock and soil by water, wind or ice"),
        ("germination", "the sprouting of a seed into a young plant"),
    ],
    [
        ("a noun", "a word that names a person, place, thing or idea"),
        ("a verb", "a word that describes an action or a state"),
        ("an adjective", "a word that describes a noun"),
        ("an adverb", "a word that modifies a verb, an adjective or another adverb"),
        ("a pronoun", "a word that stands in for a noun, such as she or it"),
        ("a synonym", "a word with the same or nearly the same meaning as another word"),
        ("an antonym", "a word with the opposite meaning of another word"),
    ],
    [
        ("a prime number", "a whole number greater than 1 whose only divisors are 1 and itself"),
        ("an even number", "a whole number that is divisible by 2"),
        ("a fraction", "a number that represents part of a whole"),
        ("a perimeter", "the total distance around the edge of a shape"),
        ("an area", "the amount of surface a flat shape covers"),
        ("an average", "the sum of a set of numbers divided by how many numbers there are"),
    ],
    [
        ("a herbivore", "an animal that eats only plants"),
        ("a carnivore", "an animal that eats mainly meat"),
        ("an omnivore", "an animal that eats both plants and meat"),
        ("a mammal", "a warm-blooded animal that feeds its young with milk"),
        ("a reptile", "a cold-blooded animal with dry, scaly skin"),
        ("an amphibian", "a cold-blooded animal that usually lives both in water and on land"),
    ],
]

# (correct spelling, common misspelling)
SPELLINGS = [
    ("receive", "recieve"), ("separate", "seperate"), ("definitely", "definately"), ("necessary", "neccessary"),
    ("accommodate", "accomodate"), ("occurrence", "occurence"), ("embarrass", "embarass"), ("calendar", "calender"),
    ("believe", "beleive"), ("friend", "freind"), ("weird", "wierd"), ("tomorrow", "tommorow"),
    ("beginning", "begining"), ("environment", "enviroment"), ("government", "goverment"), ("library", "libary"),
    ("February", "Febuary"), ("rhythm", "rythm"), ("conscience", "concience"), ("restaurant", "restaraunt"),
    ("business", "buisness"), ("until", "untill"), ("address", "adress"), ("argument", "arguement"),
]

# (word, antonym, a word that is close in meaning, i.e. NOT the opposite)
ANTONYMS = [
    ("hot", "cold", "warm"), ("big", "small", "large"), ("fast", "slow", "quick"), ("happy", "sad", "glad"),
    ("early", "late", "soon"), ("bright", "dark", "shiny"), ("strong", "weak", "tough"), ("empty", "full", "bare"),
    ("ancient", "modern", "old"), ("rough", "smooth", "coarse"), ("generous", "selfish", "kind"),
    ("increase", "decrease", "grow"), ("accept", "refuse", "take"), ("victory", "defeat", "win"),
    ("wide", "narrow", "broad"), ("heavy", "light", "bulky"), ("begin", "end", "start"), ("rich", "poor", "wealthy"),
]

# (singular, irregular plural, the regularised wrong plural)
PLURALS = [
    ("child", "children", "childs"), ("mouse", "mice", "mouses"), ("goose", "geese", "gooses"), ("tooth", "teeth", "tooths"),
    ("foot", "feet", "foots"), ("woman", "women", "womans"), ("leaf", "leaves", "leafs"), ("knife", "knives", "knifes"),
    ("wolf", "wolves", "wolfs"), ("sheep", "sheep", "sheeps"), ("ox", "oxen", "oxes"), ("criterion", "criteria", "criterions"),
    ("phenomenon", "phenomena", "phenomenons"), ("half", "halves", "halfs"), ("city", "cities", "citys"),
    ("baby", "babies", "babys"), ("potato", "potatoes", "potatos"), ("man", "men", "mans"), ("shelf", "shelves", "shelfs"),
    ("thief", "thieves", "thiefs"), ("loaf", "loaves", "loafs"), ("deer", "deer", "deers"),
]

# (verb, irregular past tense, the regularised wrong form)
PAST_TENSES = [
    ("go", "went", "goed"), ("run", "ran", "runned"), ("buy", "bought", "buyed"), ("teach", "taught", "teached"),
    ("swim", "swam", "swimmed"), ("think", "thought", "thinked"), ("catch", "caught", "catched"), ("bring", "brought", "brang"),
    ("write", "wrote", "writed"), ("eat", "ate", "eated"), ("fly", "flew", "flied"), ("drink", "drank", "drinked"),
    ("speak", "spoke", "speaked"), ("take", "took", "taked"), ("choose", "chose", "choosed"), ("freeze", "froze", "freezed"),
    ("begin", "began", "beginned"), ("find", "found", "finded"), ("hold", "held", "holded"), ("sing", "sang", "singed"),
]

# ordered lists: (name, items) -- asked for the first N items as a dash list
ORDERED_LISTS = [
    ("days of the week, starting with Monday", ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]),
    ("months of the year", ["January", "February", "March", "April", "May", "June", "July", "August"]),
    ("planets from the Sun", ["Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"]),
    ("colours of the rainbow", ["red", "orange", "yellow", "green", "blue", "indigo", "violet"]),
    ("letters of the Greek alphabet", ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]),
    ("prime numbers", ["2", "3", "5", "7", "11", "13", "17"]),
]

# (from unit, to unit, factor, a plausible wrong factor)
CONVERSIONS = [
    ("kilometres", "metres", 1000, 100), ("metres", "centimetres", 100, 10), ("kilograms", "grams", 1000, 100),
    ("hours", "minutes", 60, 100), ("minutes", "seconds", 60, 100), ("days", "hours", 24, 12),
    ("litres", "millilitres", 1000, 100), ("weeks", "days", 7, 5), ("centimetres", "millimetres", 10, 100),
    ("years", "months", 12, 10),
]

# --------------------------------------------------------------------------- styles
OPENERS = [
    "Sure! ", "Great question! ", "Of course! ", "Absolutely! ", "Good question! ", "Happy to help! ",
]


def chatty(rng: random.Random, text: str) -> str:
    """The rejected style: a friendly opener the base model likes, then the (wrong) claim, no answer tag."""
    return rng.choice(OPENERS) + text


def tagged(text: str, answer: str) -> str:
    """The chosen style: the direct answer, then a one-line answer tag."""
    return f"{text}\nAnswer: {answer}"


def fmt_num(n: int) -> str:
    return f"{n:,}"


# --------------------------------------------------------------------------- families
def fam_capitals(rng):
    out = []
    for country, cap, wrong in CAPITALS:
        prompt = rng.choice([
            f"What is the capital of {country}?", f"Which city is the capital of {country}?",
            f"Name the capital city of {country}.", f"What's the capital of {country}?",
        ])
        chosen = tagged(f"The capital of {country} is {cap}.", cap)
        rejected = chatty(rng, f"The capital of {country} is {wrong}.")
        out.append(("capitals", prompt, chosen, rejected))
    return out


def fam_elements(rng):
    out = []
    for el, sym, wrong in ELEMENTS:
        prompt = rng.choice([
            f"What is the chemical symbol for {el}?", f"Which symbol stands for {el} on the periodic table?",
            f"Give the chemical symbol of {el}.",
        ])
        chosen = tagged(f"The chemical symbol for {el} is {sym}.", sym)
        rejected = chatty(rng, f"The chemical symbol for {el} is {wrong}.")
        out.append(("elements", prompt, chosen, rejected))
    return out


def fam_definitions(rng):
    out = []
    for group in DEFINITION_GROUPS:
        for term, definition in group:
            other = rng.choice([d for t, d in group if t != term])
            prompt = rng.choice([f"What is {term}?", f"Define {term} in one sentence.", f"Briefly, what is {term}?"])
            head = term[0].upper() + term[1:]
            short = term.split(" ", 1)[-1]
            chosen = tagged(f"{head} is {definition}.", short)
            rejected = chatty(rng, f"{head} is {other}.")
            out.append(("definitions", prompt, chosen, rejected))
    return out


def fam_spelling(rng):
    out = []
    for right, wrong in SPELLINGS:
        a, b = (right, wrong) if rng.random() < 0.5 else (wrong, right)
        prompt = rng.choice([
            f'Which spelling is correct: "{a}" or "{b}"?', f'Is it spelled "{a}" or "{b}"?',
            f'Spell check: "{a}" or "{b}"?',
        ])
        chosen = tagged(f'The correct spelling is "{right}".', right)
        rejected = chatty(rng, f'The correct spelling is "{wrong}".')
        out.append(("spelling", prompt, chosen, rejected))
    return out


def fam_antonyms(rng):
    out = []
    for word, opp, near in ANTONYMS:
        prompt = rng.choice([f'What is the opposite of "{word}"?', f'Give an antonym of "{word}".',
                             f'Name a word that means the opposite of "{word}".'])
        chosen = tagged(f'The opposite of "{word}" is "{opp}".', opp)
        rejected = chatty(rng, f'The opposite of "{word}" is "{near}".')
        out.append(("antonyms", prompt, chosen, rejected))
    return out


def fam_lists(rng):
    out = []
    for name, items in ORDERED_LISTS:
        for n in (3, 4):
            prompt = rng.choice([f"List the first {n} {name}, one per line.", f"Write the first {n} {name} as a list.",
                                 f"What are the first {n} {name}? Use a list."])
            good = items[:n]
            bad = list(good)
            i = rng.randrange(1, n)
            bad[i - 1], bad[i] = bad[i], bad[i - 1]  # two items swapped: the order is wrong
            chosen = tagged("\n".join(f"- {x}" for x in good), ", ".join(good))
            rejected = chatty(rng, "Here they are:\n" + "\n".join(f"- {x}" for x in bad))
            out.append(("lists", prompt, chosen, rejected))
    return out


def fam_grammar(rng):
    out = []
    for word, plural, wrong in PLURALS:
        prompt = rng.choice([f'What is the plural of "{word}"?', f'Give the plural form of "{word}".',
                             f'One {word}, two ... what?'])
        chosen = tagged(f'The plural of "{word}" is "{plural}".', plural)
        rejected = chatty(rng, f'The plural of "{word}" is "{wrong}".')
        out.append(("grammar", prompt, chosen, rejected))
    for verb, past, wrong in PAST_TENSES:
        prompt = rng.choice([f'What is the past tense of "{verb}"?', f'Give the simple past of "{verb}".',
                             f'Yesterday I ___ ("{verb}", past tense). Which word fits?'])
        chosen = tagged(f'The past tense of "{verb}" is "{past}".', past)
        rejected = chatty(rng, f'The past tense of "{verb}" is "{wrong}".')
        out.append(("grammar", prompt, chosen, rejected))
    return out


def fam_comparisons(rng, n=24):
    out = []
    for _ in range(n):
        # decimals where the longer-looking number is the smaller one: 0.7 vs 0.65
        a = rng.randint(2, 9) / 10
        b = round(a - rng.randint(1, 9) / 100 + rng.choice([0.0, -0.1]), 2)
        if b <= 0:
            b = round(a - 0.05, 2)
        big, small = (a, b) if a > b else (b, a)
        x, y = (a, b) if rng.random() < 0.5 else (b, a)
        prompt = rng.choice([f"Which is larger, {x:g} or {y:g}?", f"Which number is bigger: {x:g} or {y:g}?",
                             f"Is {x:g} or {y:g} the greater number?"])
        chosen = tagged(f"{big:g} is larger than {small:g}.", f"{big:g}")
        rejected = chatty(rng, f"{small:g} is larger than {big:g}.")
        out.append(("comparisons", prompt, chosen, rejected))
    return out


def fam_arithmetic(rng, n=44):
    out = []
    for _ in range(n):
        op = rng.choice(["+", "-", "*"])
        if op == "+":
            a, b = rng.randint(12, 499), rng.randint(12, 499)
            r, word = a + b, "plus"
        elif op == "-":
            a, b = rng.randint(50, 999), rng.randint(11, 49)
            r, word = a - b, "minus"
        else:
            a, b = rng.randint(3, 19), rng.randint(3, 12)
            r, word = a * b, "times"
        wrong = r + rng.choice([-10, -2, -1, 1, 2, 10])
        sym = {"+": "+", "-": "-", "*": "×"}[op]
        prompt = rng.choice([f"What is {a} {word} {b}?", f"Compute {a} {sym} {b}.", f"What does {a} {sym} {b} equal?"])
        chosen = tagged(f"{a} {sym} {b} = {r}.", str(r))
        rejected = chatty(rng, f"{a} {sym} {b} = {wrong}.")
        out.append(("arithmetic", prompt, chosen, rejected))
    return out


def fam_conversions(rng, n=44):
    out = []
    for _ in range(n):
        src, dst, k, wrong_k = rng.choice(CONVERSIONS)
        q = rng.randint(2, 15)
        prompt = rng.choice([f"How many {dst} are in {q} {src}?", f"Convert {q} {src} to {dst}.",
                             f"{q} {src} is how many {dst}?"])
        chosen = tagged(f"{q} {src} is {fmt_num(q * k)} {dst}.", f"{fmt_num(q * k)} {dst}")
        rejected = chatty(rng, f"{q} {src} is {fmt_num(q * wrong_k)} {dst}.")
        out.append(("conversions", prompt, chosen, rejected))
    return out


FAMILIES = [
    fam_capitals, fam_elements, fam_definitions, fam_spelling, fam_antonyms, fam_grammar, fam_lists,
    fam_comparisons, fam_arithmetic, fam_conversions,
]


def generate(seed: int = 1234):
    rng = random.Random(seed)
    rows = []
    seen = set()
    for fam in FAMILIES:
        for family, prompt, chosen, rejected in fam(rng):
            if prompt in seen:
                continue
            seen.add(prompt)
            rows.append({"family": family, "prompt": prompt, "chosen": chosen, "rejected": rejected})
    rng.shuffle(rows)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description="Generate the bundled ORPO demo preference pairs.")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--with-family", action="store_true", help="also write a 'family' field (for analysis only)")
    args = ap.parse_args(argv)
    rows = generate(args.seed)
    with open(args.out, "w", encoding="utf-8", newline="\n") as fh:
        for r in rows:
            obj = {k: r[k] for k in ("prompt", "chosen", "rejected")}
            if args.with_family:
                obj["family"] = r["family"]
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} pairs to {args.out}")


if __name__ == "__main__":
    main()
