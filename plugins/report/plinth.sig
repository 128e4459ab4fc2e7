{
  "format": "plinth-sig/1",
  "publisher": "plinth-dev",
  "keyId": "85082c7c0f1deea83d5680886070cf1f",
  "files": {
    "index.js": "f7b7f8bc1c13721b07f91772d459b941652371df7a3485adb60243ecc1464442",
    "package.json": "379810c6cf7df5f07f05093df19d99fb7e052129c09b91408ba68881a1f0675a"
  },
  "signature": "znj3RVaahtyb+DYWLTvcuQ8YXtNqc79c1yfgoeMfKLsJpmKcOIx/r/onQUr93cbWdZOivPdqiG+H6pkaQeIhAw=="
}
