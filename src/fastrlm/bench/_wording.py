"""How BrowseComp documents and questions word the world's facts: several phrasings per fact,
categories described rather than named, and sentences about *other* entities (relatives,
rivals, places visited) that use the same verbs and name real documents of the same kind.

A question names its start by a description of its category ("someone who spent a working life
at the easel") and a year range in varied wording; documents name categories with the plain
noun or another description. Telling the fact about the document's subject from the
look-alike sentences, and the description from its near misses, is the reading a model does.
"""

from __future__ import annotations

import random

#: Per category: descriptions (a question uses one; a document the noun or another one).
DESCRIBE: dict[str, tuple[str, ...]] = {
    "painter": ("spent a working life at the easel", "made a living from oils and canvas"),
    "surveyor": ("measured land for boundary maps", "walked fields with a theodolite and chain"),
    "chemist": ("worked on reactions in a laboratory", "studied how compounds combine"),
    "novelist": ("wrote long works of fiction", "published book-length stories"),
    "architect": ("designed buildings for a living", "drew plans for houses and halls"),
    "sailor": ("served on ships at sea", "spent years aboard sailing vessels"),
    "judge": ("presided over a court", "heard cases from the bench"),
    "cartographer": ("drew maps of coasts and roads", "charted regions on paper"),
    "violinist": ("played the fiddle in concert halls", "performed on a bowed string instrument"),
    "botanist": ("studied plants and their growth", "classified flowers and trees"),
    "coastal": ("by the sea", "on the shore"),
    "mountain": ("high among peaks", "in the uplands"),
    "river": ("on the banks of a waterway", "where a stream widens"),
    "desert": ("in dry sandy country", "among dunes"),
    "valley": ("in a low basin between hills", "down in a dale"),
    "island": ("surrounded by water", "offshore"),
    "forest": ("among thick woods", "in timber country"),
    "lake": ("beside a large inland water", "on a lakeshore"),
    "shipping": ("that moved cargo by sea", "running freight vessels"),
    "publishing": ("that printed and sold books", "putting out newspapers and titles"),
    "mining": ("that dug ore from the ground", "running pits and quarries"),
    "banking": ("that lent money and kept deposits", "handling loans and savings"),
    "textile": ("that wove cloth", "running looms and mills"),
    "railway": ("that ran trains", "operating lines and stations"),
    "brewing": ("that made beer", "running breweries"),
    "insurance": ("that sold cover against loss", "underwriting policies"),
    "mystery": ("about a puzzling crime", "in which a detective investigates"),
    "poetry": ("in verse", "made of poems"),
    "travel": ("about journeys abroad", "recounting a voyage"),
    "history": ("about the past", "chronicling earlier times"),
    "satire": ("mocking the powerful", "ridiculing its age"),
    "romance": ("about a love affair", "following two lovers"),
    "science": ("explaining nature", "on discoveries and experiments"),
    "drama": ("written for the stage", "meant for actors"),
    "music": ("of concerts and bands", "where orchestras play"),
    "film": ("of screenings", "showing new pictures"),
    "chess": ("of games on sixty-four squares", "where grandmasters meet"),
    "rowing": ("of boat races", "with oars and regattas"),
    "cooking": ("of cooks and kitchens", "judging recipes"),
    "recital": ("of readings aloud", "where verse is read to an audience"),
    "kite": ("of things flown on strings", "where flyers launch paper and silk"),
    "lantern": ("of lights carried at night", "with paper lights after dark"),
}

#: Facts about the subject (``{s}``: subject; ``{t}``: the related entity; ``{y}``: a year).
FACTS: dict[str, tuple[str, ...]] = {
    "birthplace": (
        "{s} was born in {t}.",
        "{t} is where {s} was born.",
        "{s}'s birthplace was {t}.",
        "Not everyone knows that {s} was born in {t}.",
        "Despite later claims, {s} was born in {t}.",
    ),
    "employer": (
        "{s} was employed by {t}.",
        "{s} worked for {t}.",
        "{t} employed {s} for many years.",
        "Contrary to some accounts, {s} was employed by {t}.",
        "{s} never left {t}, the one employer of a whole career.",
    ),
    "hq": (
        "{s} has its headquarters in {t}.",
        "{s} is run from offices in {t}.",
        "{t} is home to the head office of {s}.",
        "Whatever its letterhead says, {s} is based in {t}.",
        "{s} has never had its headquarters anywhere but {t}.",
    ),
    "founder": (
        "{s} was founded by {t}.",
        "{t} founded {s}.",
        "{s} owes its founding to {t}.",
        "Not a committee but {t} alone founded {s}.",
        "Despite the rumours, {s} was founded by {t}.",
    ),
    "author": (
        "{s} was written by {t}.",
        "{t} wrote {s}.",
        "{s} is the work of {t}.",
        "Though sometimes credited to others, {s} was written by {t}.",
        "{t}, and nobody else, wrote {s}.",
    ),
    "host": (
        "{s} is held in {t}.",
        "{s} takes place in {t}.",
        "{t} hosts {s}.",
        "{s} has never been held anywhere but {t}.",
        "Despite its name, {s} is held in {t}.",
    ),
    "first_winner": (
        "The first edition of {s} was won by {t}.",
        "{t} won the first {s}.",
        "{s} was first won by {t}.",
        "Not a favourite but {t} won the first {s}.",
        "Against the odds, {t} won the first edition of {s}.",
    ),
}
#: The same verbs about someone or something else, naming another entity of the same kind
#: (``{s}``: the subject, ``{t}``: the look-alike target, which has a document too).
LOOKALIKES: dict[str, tuple[str, ...]] = {
    "birthplace": (
        "A cousin of {s} was born in {t}.",
        "{s}'s mentor was born in {t}.",
        "{s} spent a long winter in {t}.",
        "The closest friend of {s} was born in {t}.",
        "{s} moved to {t} as an adult.",
    ),
    "employer": (
        "A sibling of {s} worked for {t}.",
        "{s}'s spouse was employed by {t}.",
        "{t} tried for years to hire {s}.",
        "{s} consulted for {t} in retirement, unpaid.",
        "The teacher of {s} worked for {t}.",
    ),
    "hq": (
        "{s} opened a small branch in {t}.",
        "A rival of {s} has its headquarters in {t}.",
        "{s} holds its annual dinner in {t}.",
        "The largest customer of {s} is based in {t}.",
        "{s} keeps a warehouse in {t}.",
    ),
    "founder": (
        "{t} invested in {s} long after its founding.",
        "{t} chaired the board of {s} for a decade.",
        "{t} founded a competitor of {s}.",
        "{t} was the first employee hired by {s}.",
        "{t} left {s} in its third year.",
    ),
    "author": (
        "{t} wrote the preface to a later edition of {s}.",
        "{t} reviewed {s} harshly.",
        "{t} wrote a sequel to {s}.",
        "{t} translated {s}.",
        "{t} wrote the music for the stage version of {s}.",
    ),
    "host": (
        "{s} toured to {t} one year.",
        "A rival event to {s} is held in {t}.",
        "Visitors to {s} often stay in {t}.",
        "The organisers of {s} live in {t}.",
        "{s} buys its supplies in {t}.",
    ),
    "first_winner": (
        "{t} won {s} in its fifth year.",
        "{t} was runner-up at the first {s}.",
        "{t} judged the first edition of {s}.",
        "{t} won the most recent {s}.",
        "{t} has won {s} three times since.",
    ),
}
#: The other attributes (category and year) of a subject.
ABOUT: dict[str, tuple[str, ...]] = {
    "person": (
        "{s} was born in {y} and worked as a {c}.",
        "{s}, born in {y}, {d}.",
        "Born in {y}, {s} {d}.",
    ),
    "town": (
        "{s} is a {c} town founded in {y}.",
        "{s}, a town {d}, was founded in {y}.",
        "Founded in {y}, {s} is a town {d}.",
    ),
    "org": (
        "{s} is a {c} organisation founded in {y}.",
        "{s}, an organisation {d}, was founded in {y}.",
        "Founded in {y}, {s} is an organisation {d}.",
    ),
    "work": (
        "{s} is a {c} work first published in {y}.",
        "{s}, a work {d}, first appeared in {y}.",
        "First published in {y}, {s} is a work {d}.",
    ),
    "event": (
        "{s} is a {c} event first held in {y}.",
        "{s}, an event {d}, was first held in {y}.",
        "First held in {y}, {s} is an event {d}.",
    ),
}
#: How a question states an inclusive year range [lo, hi].
RANGES = (
    "between {lo} and {hi} inclusive",
    "no earlier than {lo} and no later than {hi}",
    "sometime from {lo} through {hi}",
    "in or after {lo} but before {hi1}",
    "after {lo0} and before {hi1}",
)
#: How a question phrases a hop to the next entity (by relation).
HOPS: dict[str, tuple[str, ...]] = {
    "birthplace": ("That person was born in a town.", "Take the town of that person's birth."),
    "employer": ("That person had an employer.", "Consider the organisation that employed them."),
    "hq": ("That organisation is based in a town.", "Go to the town of its head office."),
    "founder": ("Someone founded that organisation.", "Turn to the person who founded it."),
    "author": ("That work has an author.", "Turn to the person who wrote it."),
    "host": ("That event is held in a town.", "Go to the town that hosts it."),
    "first_winner": (
        "Someone won its first edition.",
        "Turn to the person who won the first edition.",
    ),
}
STARTS = {
    "person": "Consider a person who {d}, born {r} (there is exactly one).",
    "org": "Consider an organisation {d}, founded {r} (there is exactly one).",
    "work": "Consider a work {d}, first published {r} (there is exactly one).",
    "event": "Consider an event {d}, first held {r} (there is exactly one).",
}
NOUN_OF = {
    "person": "person",
    "town": "town",
    "org": "organisation",
    "work": "work",
    "event": "event",
}


def year_range(lo: int, hi: int, rng: random.Random) -> str:
    return rng.choice(RANGES).format(lo=lo, hi=hi, lo0=lo - 1, hi1=hi + 1)


def question_description(category: str, rng: random.Random) -> tuple[str, int]:
    """(a description of ``category``, its index), for the question."""
    k = rng.randrange(len(DESCRIBE[category]))
    return DESCRIBE[category][k], k


def document_category(category: str, avoid: int, rng: random.Random) -> tuple[str, str]:
    """(noun form, description form) for a document: never the question's description."""
    others = [d for i, d in enumerate(DESCRIBE[category]) if i != avoid]
    return category, rng.choice(others)
