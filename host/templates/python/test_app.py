"""Native tests of the listener: `python3 -m unittest` (no Wasm, no cluster)."""

import unittest

import app
from rmq_wasm import Outcome, testing
from rmq_wasm.testing import message


class ListenerTest(unittest.TestCase):
    def setUp(self):
        testing.reset()

    def test_accepts_retries_and_dead_letters(self):
        testing.set_config({"word": "poison"})
        msgs = [message("orders", "a fine order"), message("orders", "a poison order"),
                message("orders", "not yet", tags="later")]
        self.assertEqual(testing.consume(app.Handler, msgs),
                         [Outcome.SUCCESS, Outcome.dead_letter("body contains 'poison'"),
                          Outcome.retry()])


if __name__ == "__main__":
    unittest.main()
