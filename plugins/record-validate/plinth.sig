{
  "format": "plinth-sig/1",
  "publisher": "plinth-dev",
  "keyId": "85082c7c0f1deea83d5680886070cf1f",
  "files": {
    "index.js": "455b4d44385504ba02e955ee3abc674b5c9e859c198eb66913de6e034753483a",
    "package.json": "e12c1a3c15e794102f89c403bce193e593f9443e0a311146beb10aac9e734de3"
  },
  "signature": "hGIXe3TijAjlHadKr+znf1+Ep7MTzbEV6CyxcihFap4v0Fiq7rxq7dmpebNwJlWofnSIuCRuTFzFdMtQWxoOCg=="
}
