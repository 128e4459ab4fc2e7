{
  "format": "plinth-sig/1",
  "publisher": "plinth-dev",
  "keyId": "85082c7c0f1deea83d5680886070cf1f",
  "files": {
    "index.js": "617fe277473e5b69f50bd3627dc81f8656caaced5cb66cbd3b234ac2bf9238fb",
    "package.json": "edf4cf8975171ca2adf6e00b4ac7901d0fbc88ae429f6c30c0af28afe6587e93"
  },
  "signature": "JedU8kgnqbVJdxHNQfqg0o6xXfLqKGp2GSWzs1h94JfmVXmD2taF8g+3zjji07tpZqXnkHGMx3atW0b8Rc8TDg=="
}
