r"""Everyday questions for the language-forcing test, in English, French and German.

Gurgurov et al. force a language on a handful of ``"Q: ...\nA:"`` questions and cut each answer at
the next question. These 120 were written for the package (the same questions in the same order
in each language) so the test runs offline; the first twelve are the set earlier results used,
so ``forcing_prompts(language, n=12)`` repeats them. :data:`STOP` holds the strings an answer is
cut at.

Examples:
    >>> from lensneurons.corpora import forcing_prompts
    >>> forcing_prompts("en")[0]
    'Q: How are you today?\nA:'
    >>> forcing_prompts("fr")[0]
    "Q: Comment allez-vous aujourd'hui ?\nR:"
"""

from __future__ import annotations

from lensneurons.errors import ParameterError, UnknownLanguageError

#: Cut an answer before the model goes on to the next question or answer.
STOP = ("\nQ:", "\nA:", "\nR:")

_ANSWER = {"en": "A", "fr": "R", "de": "A"}
#: One row per question: English, French (space before "?"), German (Sie form).
_ROWS = (
    # The first twelve: the set of the earlier shipped results; keep them first, in this order.
    ("How are you today?", "Comment allez-vous aujourd'hui ?", "Wie geht es Ihnen heute?"),
    ("What is your favourite food?", "Quel est votre plat préféré ?",
     "Was ist Ihr Lieblingsessen?"),
    ("Where do you live?", "Où habitez-vous ?", "Wo wohnen Sie?"),
    ("What did you do yesterday?", "Qu'avez-vous fait hier ?", "Was haben Sie gestern gemacht?"),
    ("What is the weather like today?", "Quel temps fait-il aujourd'hui ?",
     "Wie ist das Wetter heute?"),
    ("Can you describe your family?", "Pouvez-vous décrire votre famille ?",
     "Können Sie Ihre Familie beschreiben?"),
    ("What do you like to do at the weekend?", "Qu'aimez-vous faire le week-end ?",
     "Was machen Sie gern am Wochenende?"),
    ("What is your job?", "Quel est votre métier ?", "Was ist Ihr Beruf?"),
    ("Which book are you reading?", "Quel livre lisez-vous ?", "Welches Buch lesen Sie gerade?"),
    ("How do you get to work?", "Comment allez-vous au travail ?", "Wie kommen Sie zur Arbeit?"),
    ("What time do you wake up?", "À quelle heure vous réveillez-vous ?", "Wann stehen Sie auf?"),
    ("Which season do you like best?", "Quelle saison préférez-vous ?",
     "Welche Jahreszeit mögen Sie am liebsten?"),
    # Daily life and food.
    ("What did you eat for breakfast this morning?",
     "Qu'avez-vous mangé au petit-déjeuner ce matin ?",
     "Was haben Sie heute zum Frühstück gegessen?"),
    ("Do you prefer tea or coffee?", "Préférez-vous le thé ou le café ?",
     "Trinken Sie lieber Tee oder Kaffee?"),
    ("What is your favourite colour?", "Quelle est votre couleur préférée ?",
     "Was ist Ihre Lieblingsfarbe?"),
    ("Do you have any pets?", "Avez-vous des animaux de compagnie ?", "Haben Sie Haustiere?"),
    ("Where did you grow up?", "Où avez-vous grandi ?", "Wo sind Sie aufgewachsen?"),
    ("What are your plans for tonight?", "Quels sont vos projets pour ce soir ?",
     "Was haben Sie heute Abend vor?"),
    ("How do you usually spend your evenings?", "Comment passez-vous vos soirées en général ?",
     "Wie verbringen Sie normalerweise Ihre Abende?"),
    ("What was your favourite subject at school?",
     "Quelle était votre matière préférée à l'école ?",
     "Was war Ihr Lieblingsfach in der Schule?"),
    ("Which country would you like to visit?", "Quel pays aimeriez-vous visiter ?",
     "Welches Land würden Sie gern besuchen?"),
    ("Where did you spend your last holiday?", "Où avez-vous passé vos dernières vacances ?",
     "Wo haben Sie Ihren letzten Urlaub verbracht?"),
    ("Do you like to cook?", "Aimez-vous cuisiner ?", "Kochen Sie gern?"),
    ("What do you usually have for lunch?", "Que mangez-vous d'habitude à midi ?",
     "Was essen Sie normalerweise zu Mittag?"),
    # Hobbies, music and films.
    ("Do you play any sports?", "Faites-vous du sport ?", "Treiben Sie Sport?"),
    ("What kind of music do you like?", "Quel genre de musique aimez-vous ?",
     "Welche Musik mögen Sie?"),
    ("Who is your favourite singer?", "Qui est votre chanteur préféré ?",
     "Wer ist Ihr Lieblingssänger?"),
    ("What was the last film you saw?", "Quel est le dernier film que vous avez vu ?",
     "Welchen Film haben Sie zuletzt gesehen?"),
    ("Do you play a musical instrument?", "Jouez-vous d'un instrument de musique ?",
     "Spielen Sie ein Musikinstrument?"),
    # Family.
    ("How many brothers and sisters do you have?", "Combien de frères et sœurs avez-vous ?",
     "Wie viele Geschwister haben Sie?"),
    ("What do your parents do for a living?", "Que font vos parents dans la vie ?",
     "Was machen Ihre Eltern beruflich?"),
    # Weather.
    ("Do you like the rain?", "Aimez-vous la pluie ?", "Mögen Sie Regen?"),
    ("Does it snow where you live?", "Neige-t-il là où vous habitez ?",
     "Schneit es dort, wo Sie wohnen?"),
    ("What do you do when it rains?", "Que faites-vous quand il pleut ?",
     "Was machen Sie, wenn es regnet?"),
    # Places and home.
    ("What do you like most about your town?", "Qu'aimez-vous le plus dans votre ville ?",
     "Was gefällt Ihnen an Ihrer Stadt am besten?"),
    ("Do you live in a house or a flat?", "Habitez-vous dans une maison ou un appartement ?",
     "Wohnen Sie in einem Haus oder in einer Wohnung?"),
    ("How long have you lived in your town?",
     "Depuis combien de temps habitez-vous dans votre ville ?",
     "Wie lange wohnen Sie schon in Ihrer Stadt?"),
    ("What do you think of your neighbourhood?", "Que pensez-vous de votre quartier ?",
     "Was halten Sie von Ihrem Viertel?"),
    ("What would you like to do next summer?", "Qu'aimeriez-vous faire l'été prochain ?",
     "Was möchten Sie nächsten Sommer machen?"),
    # Memories.
    ("What is your earliest childhood memory?", "Quel est votre plus ancien souvenir d'enfance ?",
     "Was ist Ihre früheste Kindheitserinnerung?"),
    ("What games did you play as a child?", "À quels jeux jouiez-vous enfant ?",
     "Welche Spiele haben Sie als Kind gespielt?"),
    ("Who was your best friend at school?", "Qui était votre meilleur ami à l'école ?",
     "Wer war in der Schule Ihr bester Freund?"),
    # Health.
    ("Did you sleep well last night?", "Avez-vous bien dormi cette nuit ?",
     "Haben Sie letzte Nacht gut geschlafen?"),
    ("How many hours do you sleep each night?", "Combien d'heures dormez-vous par nuit ?",
     "Wie viele Stunden schlafen Sie pro Nacht?"),
    ("What do you do to stay healthy?", "Que faites-vous pour rester en bonne santé ?",
     "Was tun Sie, um gesund zu bleiben?"),
    ("How often do you go to the doctor?", "À quelle fréquence allez-vous chez le médecin ?",
     "Wie oft gehen Sie zum Arzt?"),
    ("What do you do when you have a cold?", "Que faites-vous quand vous avez un rhume ?",
     "Was machen Sie, wenn Sie erkältet sind?"),
    # Shopping.
    ("Where do you usually go shopping?", "Où faites-vous vos courses d'habitude ?",
     "Wo kaufen Sie normalerweise ein?"),
    ("What was the last thing you bought?", "Quelle est la dernière chose que vous avez achetée ?",
     "Was haben Sie zuletzt gekauft?"),
    ("Do you prefer shopping online or in shops?",
     "Préférez-vous acheter en ligne ou en magasin ?",
     "Kaufen Sie lieber online oder im Geschäft ein?"),
    # Nature.
    ("Do you like walking in the forest?", "Aimez-vous vous promener en forêt ?",
     "Gehen Sie gern im Wald spazieren?"),
    ("Which animal do you like best?", "Quel animal préférez-vous ?",
     "Welches Tier mögen Sie am liebsten?"),
    ("Do you prefer the sea or the mountains?", "Préférez-vous la mer ou la montagne ?",
     "Sind Sie lieber am Meer oder in den Bergen?"),
    ("Do you have a garden?", "Avez-vous un jardin ?", "Haben Sie einen Garten?"),
    # Technology.
    ("How much time do you spend on your phone?",
     "Combien de temps passez-vous sur votre téléphone ?",
     "Wie viel Zeit verbringen Sie am Handy?"),
    ("Which app do you use most?", "Quelle application utilisez-vous le plus ?",
     "Welche App benutzen Sie am häufigsten?"),
    ("Do you use social media?", "Utilisez-vous les réseaux sociaux ?",
     "Nutzen Sie soziale Medien?"),
    # Food again.
    ("What did you have for dinner last night?", "Qu'avez-vous mangé hier soir ?",
     "Was haben Sie gestern zu Abend gegessen?"),
    ("What is your favourite fruit?", "Quel est votre fruit préféré ?",
     "Was ist Ihr Lieblingsobst?"),
    ("Do you eat meat?", "Mangez-vous de la viande ?", "Essen Sie Fleisch?"),
    ("Which restaurant do you like best?", "Quel est votre restaurant préféré ?",
     "Welches Restaurant mögen Sie am liebsten?"),
    ("Do you like spicy food?", "Aimez-vous la cuisine épicée ?", "Mögen Sie scharfes Essen?"),
    ("Can you recommend a good recipe?", "Pouvez-vous me conseiller une bonne recette ?",
     "Können Sie mir ein gutes Rezept empfehlen?"),
    # Travel and languages.
    ("How do you travel when you go on holiday?",
     "Comment voyagez-vous quand vous partez en vacances ?",
     "Wie reisen Sie, wenn Sie in den Urlaub fahren?"),
    ("Do you prefer trains or planes?", "Préférez-vous le train ou l'avion ?",
     "Reisen Sie lieber mit dem Zug oder mit dem Flugzeug?"),
    ("What do you always pack in your suitcase?", "Que mettez-vous toujours dans votre valise ?",
     "Was packen Sie immer in Ihren Koffer?"),
    ("Which city would you like to live in?", "Dans quelle ville aimeriez-vous vivre ?",
     "In welcher Stadt würden Sie gern leben?"),
    ("Have you ever travelled abroad?", "Avez-vous déjà voyagé à l'étranger ?",
     "Waren Sie schon einmal im Ausland?"),
    ("What languages do you speak?", "Quelles langues parlez-vous ?",
     "Welche Sprachen sprechen Sie?"),
    ("Which language would you like to learn?", "Quelle langue aimeriez-vous apprendre ?",
     "Welche Sprache würden Sie gern lernen?"),
    # Work.
    ("Do you like your job?", "Aimez-vous votre travail ?", "Gefällt Ihnen Ihre Arbeit?"),
    ("What time do you start work?", "À quelle heure commencez-vous le travail ?",
     "Um wie viel Uhr fangen Sie mit der Arbeit an?"),
    ("Do you work from home?", "Travaillez-vous de chez vous ?",
     "Arbeiten Sie von zu Hause aus?"),
    ("What did you want to be as a child?", "Quel métier rêviez-vous de faire enfant ?",
     "Was wollten Sie als Kind werden?"),
    ("What do you do during your lunch break?",
     "Que faites-vous pendant votre pause déjeuner ?",
     "Was machen Sie in Ihrer Mittagspause?"),
    # Hobbies again.
    ("What is your favourite hobby?", "Quel est votre passe-temps préféré ?",
     "Was ist Ihr liebstes Hobby?"),
    ("Do you like reading?", "Aimez-vous lire ?", "Lesen Sie gern?"),
    ("Do you like to dance?", "Aimez-vous danser ?", "Tanzen Sie gern?"),
    ("Which sport do you like to watch?", "Quel sport aimez-vous regarder ?",
     "Welchen Sport sehen Sie sich gern an?"),
    ("Do you collect anything?", "Collectionnez-vous quelque chose ?", "Sammeln Sie etwas?"),
    ("What would you like to learn this year?", "Qu'aimeriez-vous apprendre cette année ?",
     "Was möchten Sie dieses Jahr lernen?"),
    # Celebrations and family life.
    ("How do you celebrate your birthday?", "Comment fêtez-vous votre anniversaire ?",
     "Wie feiern Sie Ihren Geburtstag?"),
    ("When is your birthday?", "Quelle est la date de votre anniversaire ?",
     "Wann haben Sie Geburtstag?"),
    ("Which festival do you enjoy most?", "Quelle fête aimez-vous le plus ?",
     "Welches Fest feiern Sie am liebsten?"),
    ("What do you usually do on Sunday mornings?", "Que faites-vous d'habitude le dimanche matin ?",
     "Was machen Sie normalerweise am Sonntagmorgen?"),
    ("Who do you live with?", "Avec qui habitez-vous ?", "Mit wem wohnen Sie zusammen?"),
    ("Do you often see your grandparents?", "Voyez-vous souvent vos grands-parents ?",
     "Sehen Sie Ihre Großeltern oft?"),
    ("Do you have children?", "Avez-vous des enfants ?", "Haben Sie Kinder?"),
    ("How did you meet your best friend?", "Comment avez-vous rencontré votre meilleur ami ?",
     "Wie haben Sie Ihren besten Freund kennengelernt?"),
    # Opinions.
    ("What do you think of modern art?", "Que pensez-vous de l'art moderne ?",
     "Was halten Sie von moderner Kunst?"),
    ("Is it better to live in the city or the countryside?",
     "Vaut-il mieux vivre en ville ou à la campagne ?",
     "Lebt man besser in der Stadt oder auf dem Land?"),
    ("What makes a good friend?", "Selon vous, qu'est-ce qu'un bon ami ?",
     "Was macht einen guten Freund aus?"),
    # Places.
    ("What is the most beautiful place you know?",
     "Quel est le plus bel endroit que vous connaissiez ?",
     "Was ist der schönste Ort, den Sie kennen?"),
    ("What is there to see in your region?", "Qu'y a-t-il à voir dans votre région ?",
     "Was gibt es in Ihrer Region zu sehen?"),
    ("Is there a park near your home?", "Y a-t-il un parc près de chez vous ?",
     "Gibt es einen Park in Ihrer Nähe?"),
    # School.
    ("What did you study?", "Qu'avez-vous étudié ?", "Was haben Sie studiert?"),
    ("Did you like going to school?", "Aimiez-vous aller à l'école ?",
     "Sind Sie gern zur Schule gegangen?"),
    ("Who was your favourite teacher?", "Qui était votre professeur préféré ?",
     "Wer war Ihr Lieblingslehrer?"),
    # Plans.
    ("What are you going to do tomorrow?", "Qu'allez-vous faire demain ?",
     "Was machen Sie morgen?"),
    ("Where do you see yourself in five years?", "Où vous voyez-vous dans cinq ans ?",
     "Wo sehen Sie sich in fünf Jahren?"),
    ("What are you looking forward to this week?",
     "Qu'attendez-vous avec impatience cette semaine ?",
     "Worauf freuen Sie sich diese Woche?"),
    # Evenings, television and habits.
    ("What made you laugh recently?", "Qu'est-ce qui vous a fait rire récemment ?",
     "Worüber haben Sie zuletzt gelacht?"),
    ("What is your favourite film?", "Quel est votre film préféré ?", "Was ist Ihr Lieblingsfilm?"),
    ("Do you often watch television?", "Regardez-vous souvent la télévision ?",
     "Sehen Sie oft fern?"),
    ("Do you prefer mornings or evenings?", "Préférez-vous le matin ou le soir ?",
     "Mögen Sie lieber den Morgen oder den Abend?"),
    ("How do you relax after a long day?",
     "Comment vous détendez-vous après une longue journée ?",
     "Wie entspannen Sie sich nach einem langen Tag?"),
    ("What is in your fridge right now?", "Qu'y a-t-il dans votre frigo en ce moment ?",
     "Was haben Sie gerade im Kühlschrank?"),
    # Getting around and clothes.
    ("Do you have a car?", "Avez-vous une voiture ?", "Haben Sie ein Auto?"),
    ("Do you ride a bike?", "Faites-vous du vélo ?", "Fahren Sie Fahrrad?"),
    ("What clothes do you like to wear?", "Quels vêtements aimez-vous porter ?",
     "Welche Kleidung tragen Sie gern?"),
    ("What is the best present you have ever received?",
     "Quel est le plus beau cadeau que vous ayez reçu ?",
     "Was war das schönste Geschenk, das Sie je bekommen haben?"),
    # Weather and nature again.
    ("Do you like hot weather?", "Aimez-vous quand il fait chaud ?", "Mögen Sie heißes Wetter?"),
    ("What do you do on a cold winter day?", "Que faites-vous par une froide journée d'hiver ?",
     "Was machen Sie an einem kalten Wintertag?"),
    ("Which flowers do you like?", "Quelles fleurs aimez-vous ?", "Welche Blumen mögen Sie?"),
    # Technology again.
    ("Do you have a computer at home?", "Avez-vous un ordinateur à la maison ?",
     "Haben Sie einen Computer zu Hause?"),
    ("What do you use the internet for?", "À quoi vous sert Internet ?",
     "Wofür nutzen Sie das Internet?"),
    ("What was your first mobile phone?", "Quel a été votre premier téléphone portable ?",
     "Was war Ihr erstes Handy?"),
    ("Who do you call when you need help?", "Qui appelez-vous quand vous avez besoin d'aide ?",
     "Wen rufen Sie an, wenn Sie Hilfe brauchen?"),
    # Last ones.
    ("What is your favourite dessert?", "Quel est votre dessert préféré ?",
     "Was ist Ihr Lieblingsdessert?"),
    ("What is the first thing you do in the morning?",
     "Quelle est la première chose que vous faites le matin ?",
     "Was machen Sie morgens als Erstes?"),
)
_QUESTIONS = {language: tuple(row[i] for row in _ROWS) for i, language in enumerate(_ANSWER)}


def forcing_prompts(language: str = "en", *, n: int | None = None) -> list[str]:
    r"""The package's everyday questions in ``language`` as ``"Q: ...\nA:"`` prompts.

    The same 120 questions, in the same order, are written in English, French and German; French
    prompts end with ``"\nR:"`` (*réponse*), the others with ``"\nA:"``.

    Args:
        language: ``"en"``, ``"fr"`` or ``"de"``.
        n: Return the first ``n`` questions only (``n=12`` repeats the set of earlier results);
            ``None`` returns all 120.

    Returns:
        One prompt per question, ``"Q: <question>\n<A or R>:"``, in the shared order.

    Raises:
        UnknownLanguageError: a language the questions are not written in.
        ParameterError: ``n`` is not a positive integer or exceeds the number of questions.

    Examples:
        >>> len(forcing_prompts("de"))
        120
        >>> forcing_prompts("de", n=2)
        ['Q: Wie geht es Ihnen heute?\nA:', 'Q: Was ist Ihr Lieblingsessen?\nA:']
    """
    if language not in _QUESTIONS:
        raise UnknownLanguageError(
            f"The forcing questions are written in {sorted(_QUESTIONS)}, not {language!r}; "
            "pass your own prompts for other languages.")
    questions = _QUESTIONS[language]
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(questions):
            raise ParameterError(
                f"n must be an integer from 1 to {len(questions)} (the number of questions in "
                f"{language!r}), got {n!r}; pass n=None for all of them.")
        questions = questions[:n]
    return [f"Q: {question}\n{_ANSWER[language]}:" for question in questions]
