{
  "format": "plinth-sig/1",
  "publisher": "plinth-dev",
  "keyId": "85082c7c0f1deea83d5680886070cf1f",
  "files": {
    "index.js": "e29cf025e24dc368e8ab122596474939474c5b3cdf6ffde58ed873ccd2d2bf56",
    "package.json": "379810c6cf7df5f07f05093df19d99fb7e052129c09b91408ba68881a1f0675a"
  },
  "signature": "Ixoi9vZw6zWkHBx/QUKhpzngJDVaGHyRpMRGoL2GgezqvX9XVafUpuugZI9nOXhAJWOYQW3ieLZW8LA6jDL8DA=="
}
