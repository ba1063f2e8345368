"""The demo tokenizer's vocabulary: common English words, each one whole token.

Whole-word tokens keep the random demo model's output legible ("the river, and bright stone.")
instead of a soup of word pieces. Digits and punctuation are listed in `inference.demo`.
"""

WORDS = """
a about above across after again against air all almost alone along already also always am
among an and animal another answer any anything apple are around art as ask at autumn away
back bad be beautiful because bed been before began begin behind being bell below beside best
better between big bird black blue boat body book both bread bridge bright bring brother brown
build but butter by call came can candle car care carry cat change child children city clean
clear close cloud cold color come cook could country cup cut dance dark day deep did different
do does dog done door down dream drink dry during each early earth east easy eat egg end enough
even evening ever every eye face fall family far farm fast father feel few field fill find fire
first fish five flower fly follow food for forest four free fresh friend from fruit full garden
gave gentle get girl give glass go gold good grass gray great green ground grow had hand happy
hard has have he head hear heart heavy help her here high hill him his hold home honey hope horse
hot house how i ice idea if in inside into is island it its just keep kind king kitchen knew
know lake land large last late laugh leaf learn leave left less let letter light like line listen
little live long look lost love low made make man many may me meadow mean might milk mind mirror
moon more morning most mother mountain move much music must my name near need never new next
night no north not nothing now number ocean of off often oil old on once one only open or orange
other our out over own page paper park part pepper people picture place plain plant play please
poem point pot quick quiet rain read ready red remember rest rice right river road rock room
round run said salt same sand saw say sea second see seed seem set shadow she ship short should
show side silver simple sing sister sit six sky sleep slow small snow so soft some something
song soon soup south speak spring star start stay still stone stop story street strong such
summer sun sure sweet table take talk tall tea tell ten than that the their them then there these
they thing think this those three through time to today together told too took tower town tree
true try turn two under until up upon us use very village voice wait walk wall want warm was
watch water wave way we wear went were west what when where which while white who why wide wild
will wind window winter wish with without woman wood word work world would write year yellow yes
yet you young your
""".split()
