r"""Everyday questions for the language-forcing test, in English, French and German.

Gurgurov et al. force a language on a handful of ``"Q: ...\nA:"`` questions and cut each answer at
the next question. These twelve were written for the package (the same questions in each
language) so the test runs offline; :data:`STOP` holds the strings an answer is cut at.

Examples:
    >>> from lensneurons.steering import forcing_prompts
    >>> forcing_prompts("en")[0]
    'Q: How are you today?\nA:'
    >>> forcing_prompts("fr")[0]
    "Q: Comment allez-vous aujourd'hui ?\nR:"
"""

from __future__ import annotations

from lensneurons.errors import UnknownLanguageError

#: Cut an answer before the model goes on to the next question or answer.
STOP = ("\nQ:", "\nA:", "\nR:")

_ANSWER = {"en": "A", "fr": "R", "de": "A"}
_QUESTIONS = {
    "en": ("How are you today?", "What is your favourite food?", "Where do you live?",
           "What did you do yesterday?", "What is the weather like today?",
           "Can you describe your family?", "What do you like to do at the weekend?",
           "What is your job?", "Which book are you reading?", "How do you get to work?",
           "What time do you wake up?", "Which season do you like best?"),
    "fr": ("Comment allez-vous aujourd'hui ?", "Quel est votre plat préféré ?",
           "Où habitez-vous ?", "Qu'avez-vous fait hier ?", "Quel temps fait-il aujourd'hui ?",
           "Pouvez-vous décrire votre famille ?", "Qu'aimez-vous faire le week-end ?",
           "Quel est votre métier ?", "Quel livre lisez-vous ?",
           "Comment allez-vous au travail ?", "À quelle heure vous réveillez-vous ?",
           "Quelle saison préférez-vous ?"),
    "de": ("Wie geht es Ihnen heute?", "Was ist Ihr Lieblingsessen?", "Wo wohnen Sie?",
           "Was haben Sie gestern gemacht?", "Wie ist das Wetter heute?",
           "Können Sie Ihre Familie beschreiben?", "Was machen Sie gern am Wochenende?",
           "Was ist Ihr Beruf?", "Welches Buch lesen Sie gerade?",
           "Wie kommen Sie zur Arbeit?", "Wann stehen Sie auf?",
           "Welche Jahreszeit mögen Sie am liebsten?"),
}


def forcing_prompts(language: str = "en") -> list[str]:
    r"""The twelve questions in ``language`` (``en``, ``fr``, ``de``) as ``"Q: ...\nA:"`` prompts.

    Raises:
        UnknownLanguageError: a language the questions are not written in.
    """
    if language not in _QUESTIONS:
        raise UnknownLanguageError(
            f"The forcing questions are written in {sorted(_QUESTIONS)}, not {language!r}; "
            "pass your own prompts for other languages.")
    return [f"Q: {question}\n{_ANSWER[language]}:" for question in _QUESTIONS[language]]
