"""Generate `tinytales.txt`, the small corpus tunesmith ships for its offline demo.

The text is written by this program from templates (so the project is free to ship it):
short stories about people, animals and things, and little counting stories. Documents
are separated by a blank line. Regenerate with:
    python -m tunesmith.pretraining.corpus.generate
"""
from __future__ import annotations

import random
from pathlib import Path

NAMES = ["Tom", "Mia", "Sam", "Lily", "Ben", "Anna", "Max", "Zoe", "Leo", "Ella", "Jack", "Nora",
         "Finn", "Ruby", "Omar", "Iris", "Hugo", "Maya", "Theo", "Lena"]
ANIMALS = ["cat", "dog", "bird", "fox", "rabbit", "frog", "duck", "bear", "mouse", "horse", "owl", "fish"]
PLACES = ["the park", "the forest", "the garden", "the beach", "the farm", "the river", "the town",
          "the hill", "the school", "the market", "the lake", "the library"]
THINGS = ["ball", "kite", "book", "box", "hat", "cake", "apple", "boat", "drum", "key", "map", "shell",
          "flower", "stone", "cup", "lamp"]
ADJ = ["red", "big", "small", "old", "new", "shiny", "soft", "blue", "green", "happy", "little", "yellow"]
FEEL = ["happy", "sad", "tired", "excited", "scared", "proud", "curious", "calm", "hungry", "surprised"]
WEATHER = ["sunny", "rainy", "windy", "cold", "warm", "cloudy", "snowy"]
TIMES = ["One day", "One morning", "Last summer", "In the evening", "On a " + "{w}" + " day", "Once upon a time"]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve"]


def _story(r: random.Random) -> str:
    a, b = r.sample(NAMES, 2)
    animal, place, thing = r.choice(ANIMALS), r.choice(PLACES), r.choice(THINGS)
    adj, feel, w = r.choice(ADJ), r.choice(FEEL), r.choice(WEATHER)
    start = r.choice(TIMES).format(w=w)
    r.choice(["he", "she"])  # an unused draw, kept: the shipped corpus was generated with it
    sentences = [
        f"{start}, {a} went to {place}.",
        f"It was a {w} day and {a} felt {feel}.",
        f"At {place}, {a} saw a {adj} {animal}.",
        f"The {animal} had a {thing}.",
        f'"Hello, little {animal}," said {a}. "Can I play with your {thing}?"',
        r.choice([f"The {animal} said yes, and they played all day.",
                  f"The {animal} ran away with the {thing}.",
                  f"The {animal} gave the {thing} to {a}."]),
        r.choice([f"Then {b} came to {place} too.", f"Later, {a} met {b}.", f"Soon {b} joined them."]),
        f"{b} said, \"What a {adj} {thing}!\"",
        r.choice([f"They shared the {thing} and laughed.", f"They took the {thing} home.",
                  f"They put the {thing} back where it was."]),
        r.choice([f"When the sun went down, {a} was {r.choice(FEEL)}.", f"{a} and {b} became good friends.",
                  f"That night, {a} dreamed about the {animal}.", "The end."]),
    ]
    middle = sorted(r.sample(range(3, len(sentences) - 1), k=r.randint(2, 6)))
    text = " ".join(sentences[:3] + [sentences[i] for i in middle] + sentences[-1:])
    for vowel in "aeiou":
        text = text.replace(f" a {vowel}", f" an {vowel}")
    return text


def _count(n: int, thing: str) -> str:
    return f"{NUMBER_WORDS[n]} {thing}" + ("" if n == 1 else "s")


def _counting(r: random.Random) -> str:
    name, thing = r.choice(NAMES), r.choice(THINGS)
    x, y = r.randint(1, 6), r.randint(1, 6)
    if r.random() < 0.5:
        return (f"{name} had {_count(x, thing)}. {name} found {NUMBER_WORDS[y]} more. "
                f"Now {name} has {_count(x + y, thing)}. {x} plus {y} is {x + y}.")
    x, y = max(x, y), min(x, y)
    return (f"{name} had {_count(x, thing)}. {name} gave {NUMBER_WORDS[y]} away. "
            f"Now {name} has {_count(x - y, thing)}. {x} minus {y} is {x - y}.")


def generate(n_documents: int = 6000, seed: int = 0) -> list[str]:
    r = random.Random(seed)
    return [_counting(r) if r.random() < 0.25 else _story(r) for _ in range(n_documents)]


def main() -> None:
    out = Path(__file__).with_name("tinytales.txt")
    out.write_text("\n\n".join(generate()) + "\n", encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
