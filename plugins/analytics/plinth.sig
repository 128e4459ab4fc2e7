{
  "format": "plinth-sig/1",
  "publisher": "plinth-dev",
  "keyId": "85082c7c0f1deea83d5680886070cf1f",
  "files": {
    "index.js": "d16dde161ac39f5e04180f4b598df486381abe6ed989c9504c1782068ee2cd94",
    "package.json": "556f69a2b76651e8a5205af0f419e6159967f215b133802408d75de1aa2eb7ac"
  },
  "signature": "AFotKQx2Fli2YPi0kPRsVoUvTCGGFzVgye+RKmK9YJIy5EnVJneVmCFaX58TbRdIREIyyf49Vx7QCYqTPhn9AA=="
}
