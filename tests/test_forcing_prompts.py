"""The package's forcing questions: 120 per language, aligned, and the n= cut."""

from __future__ import annotations

import pytest

from lensneurons.corpora import forcing_prompts
from lensneurons.errors import ParameterError

LANGUAGES = ("en", "fr", "de")


@pytest.mark.parametrize("language", LANGUAGES)
def test_there_are_120_questions_without_duplicates(language):
    prompts = forcing_prompts(language)
    assert len(prompts) == 120
    assert len(set(prompts)) == len(prompts)


def test_every_language_has_the_same_number_of_questions():
    assert len({len(forcing_prompts(language)) for language in LANGUAGES}) == 1


def test_the_first_question_is_unchanged():
    assert forcing_prompts("en")[0] == "Q: How are you today?\nA:"
    assert forcing_prompts()[0] == "Q: How are you today?\nA:"


@pytest.mark.parametrize("language, answer", [("en", "\nA:"), ("fr", "\nR:"), ("de", "\nA:")])
def test_prompts_have_the_question_and_answer_form(language, answer):
    for prompt in forcing_prompts(language):
        assert prompt.startswith("Q: ") and prompt.endswith(answer)


@pytest.mark.parametrize("language", LANGUAGES)
def test_n_gives_the_first_questions(language):
    assert forcing_prompts(language, n=5) == forcing_prompts(language)[:5]
    assert forcing_prompts(language, n=120) == forcing_prompts(language)
    assert forcing_prompts(language, n=None) == forcing_prompts(language)


@pytest.mark.parametrize("n", [0, -1, 1000, 121, True])  # a float or a string: test_bad_steering
def test_a_bad_n_says_how_many_there_are(n):
    with pytest.raises(ParameterError, match="120"):
        forcing_prompts("fr", n=n)
