{
  "format": "plinth-sig/1",
  "publisher": "plinth-dev",
  "keyId": "85082c7c0f1deea83d5680886070cf1f",
  "files": {
    "index.js": "d75609150e01b1dd318eaaa49150c0ea0942247c1d54db82d6f9ff665f182885",
    "package.json": "de22fb98fc1a2ab206c6faed4a2bed7cb91752945663c4c2c8ce29d8b99557d5"
  },
  "signature": "NpDcK9kFVu7EESrO5KemO+zifdZVfz34TqEs4+QMEMc6rFSF7fXRz6QyOHy9F74lh2s8KTMub/Eixn+YWkyWDA=="
}
